"""The ``worker_heartbeats`` table: every statement on it, and the readiness probe's query.

Each verification worker (the one inside ``relaykit serve`` and every ``relaykit worker``)
keeps one row, keyed by its owner name: :func:`beat` after a claim pass that reached the
database, :func:`record_failure` after one that failed (the beat time is left as it was, so
a worker that cannot claim goes stale), :func:`remove` on a clean stop. Rows of workers that
died without stopping are deleted by :func:`delete_stale` (the worker's sweep). ``/ready``
reads them with :func:`latest` (relaykit.readiness).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from relaykit.storage.models import worker_heartbeats

t = worker_heartbeats

#: The longest error text kept (the column's size): a type name fits with room to spare.
MAX_ERROR_LENGTH = 200


def _upsert(dialect: Any, *, fresh: bool) -> sa.Insert:
    """Insert the worker's row or update it. ``fresh``: a good pass (beat time set, error
    cleared); else a failed one (error and failure count set, beat time kept)."""
    statement = dialect.insert(t)
    excluded = statement.excluded
    if fresh:
        changes = {"beat_at": excluded.beat_at, "last_error": None, "failures": excluded.failures}
    else:
        changes = {"last_error": excluded.last_error, "failures": excluded.failures}
    return statement.on_conflict_do_update(index_elements=[t.c.owner], set_=changes)


_BEAT = {"sqlite": _upsert(sqlite, fresh=True), "postgresql": _upsert(postgresql, fresh=True)}
_FAILURE = {"sqlite": _upsert(sqlite, fresh=False), "postgresql": _upsert(postgresql, fresh=False)}


def beat(
    conn: sa.Connection, owner: str, *, started_at: dt.datetime, now: dt.datetime, failures: int
) -> None:
    """The worker is claiming: its row's ``beat_at`` is ``now``, its last error cleared."""
    conn.execute(
        _BEAT[conn.dialect.name],
        {
            "owner": owner,
            "started_at": started_at,
            "beat_at": now,
            "last_error": None,
            "failures": failures,
        },
    )


def record_failure(
    conn: sa.Connection, owner: str, *, started_at: dt.datetime, error: str, failures: int
) -> None:
    """A claim pass failed with ``error`` (a type name): kept with the failure count. The
    beat time stays where the last good pass left it (a new row gets its start time)."""
    conn.execute(
        _FAILURE[conn.dialect.name],
        {
            "owner": owner,
            "started_at": started_at,
            "beat_at": started_at,
            "last_error": error[:MAX_ERROR_LENGTH],
            "failures": failures,
        },
    )


def remove(conn: sa.Connection, owner: str) -> int:
    """The worker stopped cleanly: its row goes."""
    return int(conn.execute(t.delete().where(t.c.owner == owner)).rowcount)


def delete_stale(conn: sa.Connection, *, before: dt.datetime) -> int:
    """Delete the rows of workers that have not beaten since ``before`` (gone without a
    clean stop). How many."""
    return int(conn.execute(t.delete().where(t.c.beat_at < before)).rowcount)


def latest(conn: sa.Connection, owner: str | None = None) -> sa.Row[Any] | None:
    """``owner``'s row, or (``None``) the row that beat last: ``owner``, ``beat_at``,
    ``last_error``, ``failures``; ``None`` when there is none."""
    statement = sa.select(t.c.owner, t.c.beat_at, t.c.last_error, t.c.failures)
    if owner is not None:
        statement = statement.where(t.c.owner == owner)
    return conn.execute(statement.order_by(t.c.beat_at.desc()).limit(1)).first()


def ping(conn: sa.Connection) -> None:
    """The readiness probe's trivial query: the database answers."""
    conn.execute(sa.text("SELECT 1")).one()
