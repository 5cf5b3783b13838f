"""The ``webhook_events`` table: every event a provider's webhook carried, once per
integration and dedupe key."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from relaykit.pagination import Page
from relaykit.storage.fast import Statement
from relaykit.storage.models import webhook_events
from relaykit.storage.pages import select_page

T = TypeVar("T")

w = webhook_events


def _insert_if_new(dialect: Any) -> sa.Insert:
    """An insert that does nothing when the integration already holds the dedupe key (the
    unique constraint decides between concurrent deliveries). Built once, so SQLAlchemy
    reuses its compiled form; RETURNING because psycopg's rowcount is not reliable here."""
    return (
        dialect.insert(w)
        .on_conflict_do_nothing(index_elements=[w.c.integration_id, w.c.dedupe_key])
        .returning(w.c.id)
    )


#: relaykit runs on SQLite and PostgreSQL only; both have ON CONFLICT DO NOTHING.
_INSERT_IF_NEW = {
    "sqlite": Statement(_insert_if_new(sqlite)),
    "postgresql": Statement(_insert_if_new(postgresql)),
}
_MARK_APPLIED = Statement(
    w.update()
    .where(w.c.id == sa.bindparam("b_id"))
    .values(applied=True, attempt_count=w.c.attempt_count + sa.bindparam("b_count"))
)


def insert_if_new(conn: sa.Connection, values: Mapping[str, Any]) -> bool:
    """Store an event unless the integration already holds its dedupe key: whether it was
    stored (``False``: a repeat)."""
    return _INSERT_IF_NEW[conn.dialect.name].execute(conn, values).fetchone() is not None


def mark_applied(conn: sa.Connection, event_id: str, attempt_count: int) -> None:
    """Record that the event moved ``attempt_count`` more attempts."""
    _MARK_APPLIED.execute(conn, {"b_id": event_id, "b_count": attempt_count})


class Waiting(NamedTuple):
    """A stored event that has not moved anything yet (:func:`waiting_for`)."""

    id: str
    status: str
    received_at: dt.datetime


_WAITING = Statement(
    sa.select(w.c.id, w.c.status, w.c.received_at)
    .where(
        w.c.integration_id == sa.bindparam("b_integration"),
        w.c.object_id == sa.bindparam("b_object"),
        w.c.status.is_not(None),
        w.c.applied.is_(False),
    )
    .order_by(w.c.id)
)


def waiting_for(conn: sa.Connection, integration_id: str, object_id: str) -> list[Waiting]:
    """The integration's stored events about ``object_id`` that carry a status and have not
    moved anything yet (they arrived before the send that made the object ended), oldest
    first. A statement built once, run on the driver (every send of a provider with
    webhooks asks)."""
    found = _WAITING.execute(conn, {"b_integration": integration_id, "b_object": object_id})
    return [Waiting(str(i), str(status), _aware(at)) for i, status, at in found.fetchall()]


def _aware(value: Any) -> dt.datetime:
    """A timestamp as either driver hands it back: SQLite's text, PostgreSQL's datetime."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def find(conn: sa.Connection, tenant_id: str, event_id: str) -> sa.RowMapping | None:
    """The tenant's event with that id; another tenant's id finds nothing."""
    row = conn.execute(sa.select(w).where(w.c.id == event_id, w.c.tenant_id == tenant_id)).first()
    return None if row is None else row._mapping


def page_of(
    conn: sa.Connection,
    tenant_id: str,
    *,
    integration_id: str | None,
    type: str | None,
    applied: bool | None,
    page: int,
    per_page: int,
    view: Callable[[Any], T],
) -> Page[T]:
    """One page of the tenant's events, newest first."""
    conditions = [w.c.tenant_id == tenant_id]
    if integration_id is not None:
        conditions.append(w.c.integration_id == integration_id)
    if type is not None:
        conditions.append(w.c.type == type)
    if applied is not None:
        conditions.append(w.c.applied.is_(applied))
    return select_page(
        conn,
        w,
        conditions,
        page=page,
        per_page=per_page,
        view=lambda row: view(row._mapping),
        newest_first=True,
    )


def delete_received_before(conn: sa.Connection, cutoff: dt.datetime, limit: int = 1000) -> int:
    """Delete up to ``limit`` events received before ``cutoff`` (a bounded batch, as the
    ledger's retention): how many. The attempts they moved keep their delivery status."""
    ids = [
        row.id
        for row in conn.execute(sa.select(w.c.id).where(w.c.received_at < cutoff).limit(limit))
    ]
    if not ids:
        return 0
    return int(conn.execute(w.delete().where(w.c.id.in_(ids))).rowcount)
