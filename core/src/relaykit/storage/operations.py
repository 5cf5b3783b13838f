"""The ``operations`` table: one row per request to do something, however many tries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import sqlalchemy as sa

from relaykit.pagination import Page
from relaykit.storage.fast import Statement
from relaykit.storage.models import delivery_attempts, operations
from relaykit.storage.pages import select_page

T = TypeVar("T")

o = operations
d = delivery_attempts
IN_PROGRESS = "in_progress"
# Built once, so SQLAlchemy reuses the compiled statements (dispatch's hot path); the SET
# columns of _FINISH are the keys of the parameters.
_INSERT = Statement(o.insert())
_FINISH = Statement(o.update().where(o.c.id == sa.bindparam("b_id"), o.c.status == IN_PROGRESS))
_RENEW = Statement(
    o.update()
    .where(
        o.c.id == sa.bindparam("b_id"),
        o.c.status == IN_PROGRESS,
        o.c.lease_expires_at > sa.bindparam("b_now"),
    )
    .values(lease_expires_at=sa.bindparam("b_until"))
)


def by_idempotency_key(conn: sa.Connection, tenant_id: str, key: str) -> sa.Row[Any] | None:
    """The tenant's operation holding ``key``, or ``None``."""
    return conn.execute(
        sa.select(o).where(o.c.tenant_id == tenant_id, o.c.idempotency_key == key)
    ).first()


def find(conn: sa.Connection, tenant_id: str, operation_id: str) -> sa.Row[Any] | None:
    """The tenant's operation with that id; another tenant's id finds nothing."""
    return conn.execute(
        sa.select(o).where(o.c.id == operation_id, o.c.tenant_id == tenant_id)
    ).first()


def insert(conn: sa.Connection, values: Mapping[str, Any]) -> None:
    """Record an operation. A second one under the same tenant and idempotency key raises
    SQLAlchemy's IntegrityError (the partial unique index)."""
    _INSERT.execute(conn, values)


def finish(
    conn: sa.Connection, operation_id: str, values: Mapping[str, Any], *, release_key: bool
) -> bool:
    """Record how an operation still in progress ended (its lease is over); ``release_key``
    frees its idempotency key so the same key may start a new operation. Whether it was
    still in progress (an operation settled meanwhile keeps what it was settled as)."""
    params: dict[str, Any] = {**values, "lease_expires_at": None, "b_id": operation_id}
    if release_key:
        params["idempotency_key"] = None
    return _FINISH.execute(conn, params).rowcount == 1


def renew_lease(
    conn: sa.Connection, operation_id: str, *, now: dt.datetime, until: dt.datetime
) -> bool:
    """Extend the lease of an operation still in progress whose lease has not run out:
    whether it was (else it may have been settled as abandoned: stop)."""
    params = {"b_id": operation_id, "b_now": now, "b_until": until}
    return _RENEW.execute(conn, params).rowcount == 1


def release_key(conn: sa.Connection, operation_id: str) -> None:
    """Free the operation's idempotency key (it expired)."""
    conn.execute(o.update().where(o.c.id == operation_id).values(idempotency_key=None))


def release_expired_keys(conn: sa.Connection, now: dt.datetime) -> int:
    """Free the idempotency keys whose time is up: how many."""
    result = conn.execute(
        o.update()
        .where(o.c.idempotency_key.is_not(None), o.c.key_expires_at <= now)
        .values(idempotency_key=None)
    )
    return int(result.rowcount)


def abandoned(conn: sa.Connection, now: dt.datetime, limit: int = 500) -> list[sa.Row[Any]]:
    """Operations still in progress whose lease ran out (their process is gone)."""
    return list(
        conn.execute(
            sa.select(o)
            .where(o.c.status == IN_PROGRESS, o.c.lease_expires_at <= now)
            .order_by(o.c.lease_expires_at)
            .limit(limit)
        )
    )


def delete_created_before(conn: sa.Connection, cutoff: dt.datetime, limit: int = 1000) -> int:
    """Delete up to ``limit`` ended operations created before ``cutoff``, with their
    attempts (a bounded batch: the sweep may run on the event loop): how many operations."""
    ended_before = (o.c.created_at < cutoff, o.c.status != IN_PROGRESS)
    ids = [row.id for row in conn.execute(sa.select(o.c.id).where(*ended_before).limit(limit))]
    if not ids:
        return 0
    conn.execute(d.delete().where(d.c.operation_id.in_(ids)))
    return int(conn.execute(o.delete().where(o.c.id.in_(ids))).rowcount)


def page_of(
    conn: sa.Connection,
    tenant_id: str,
    *,
    capability: str | None,
    status: str | None,
    integration_id: str | None,
    idempotency_key: str | None,
    page: int,
    per_page: int,
    view: Callable[[Any], T],
) -> Page[T]:
    """One page of the tenant's operations, newest first."""
    conditions = [o.c.tenant_id == tenant_id]
    for column, value in (
        (o.c.capability, capability),
        (o.c.status, status),
        (o.c.integration_id, integration_id),
        (o.c.idempotency_key, idempotency_key),
    ):
        if value is not None:
            conditions.append(column == value)
    return select_page(
        conn, o, conditions, page=page, per_page=per_page, view=view, newest_first=True
    )
