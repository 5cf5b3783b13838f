"""The verification queue as a metric reads it: one statement on ``integrations``, over the
partial index of the queue (``ix_integrations_verify_queue``)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from relaykit.lifecycle import Status
from relaykit.storage.models import integrations

t = integrations

#: Milliseconds a scrape's read may take on PostgreSQL before the server stops it.
STATEMENT_TIMEOUT_MS = 2000

_DUE = sa.select(sa.func.count(), sa.func.min(t.c.next_verify_at)).where(
    t.c.status == Status.PENDING_VERIFY.value,
    t.c.deleted_at.is_(None),
    t.c.next_verify_at <= sa.bindparam("b_now"),
)


def due(conn: sa.Connection, now: dt.datetime) -> tuple[int, dt.datetime | None]:
    """How many ``pending_verify`` rows are due at ``now`` (waiting or leased to a check),
    and the earliest ``next_verify_at`` among them."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
    count, oldest = conn.execute(_DUE, {"b_now": now}).one()
    return int(count), oldest
