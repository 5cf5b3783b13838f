"""The ``delivery_attempts`` table: one row per try of an operation with one integration."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import sqlalchemy as sa

from relaykit.pagination import Page
from relaykit.storage.fast import Statement
from relaykit.storage.models import delivery_attempts
from relaykit.storage.pages import select_page
from relaykit.webhooks import STATUS_RANK

T = TypeVar("T")

d = delivery_attempts
# Built once, so SQLAlchemy reuses the compiled statement (dispatch's hot path).
_INSERT = Statement(d.insert())


IN_FLIGHT = "in_flight"


def insert(conn: sa.Connection, attempt: Mapping[str, Any]) -> None:
    """Record an attempt (``in_flight``, before its provider call)."""
    _INSERT.execute(conn, attempt)


_FINISH = Statement(d.update().where(d.c.id == sa.bindparam("b_id")))


def finish(conn: sa.Connection, attempt_id: str, values: Mapping[str, Any]) -> None:
    """Record how an attempt ended (the SET columns are the keys of ``values``)."""
    _FINISH.execute(conn, {**values, "b_id": attempt_id})


def _move_statement(status: str) -> sa.Update:
    """Move the succeeded attempts of an integration that sent an object to ``status``,
    only forward: the statuses of the same rank or higher are excluded in the WHERE, so
    concurrent webhooks cannot move an attempt back whatever order they commit in."""
    at_or_above = sorted(name for name, rank in STATUS_RANK.items() if rank >= STATUS_RANK[status])
    return (
        d.update()
        .where(
            d.c.integration_id == sa.bindparam("b_integration"),
            d.c.provider_object_id == sa.bindparam("b_object"),
            d.c.status == "succeeded",
            sa.or_(d.c.delivery_status.is_(None), d.c.delivery_status.not_in(at_or_above)),
        )
        .values(delivery_status=status, delivery_updated_at=sa.bindparam("b_now"))
    )


# One statement per status, built once.
_MOVE = {status: Statement(_move_statement(status)) for status in STATUS_RANK}


def move_delivery_status(
    conn: sa.Connection, integration_id: str, object_id: str, status: str, now: dt.datetime
) -> int:
    """Move the integration's succeeded attempts that sent ``object_id`` to ``status`` where
    that is forward (:func:`relaykit.webhooks.moves_forward`): how many moved. A status
    outside :data:`~relaykit.webhooks.STATUS_RANK` moves nothing."""
    statement = _MOVE.get(status)
    if statement is None:
        return 0
    params = {"b_integration": integration_id, "b_object": object_id, "b_now": now}
    return int(statement.execute(conn, params).rowcount)


def of_operation(conn: sa.Connection, operation_id: str) -> list[sa.RowMapping]:
    """An operation's attempts, in the order they were made."""
    return [
        row._mapping
        for row in conn.execute(
            sa.select(d).where(d.c.operation_id == operation_id).order_by(d.c.id)
        )
    ]


def of_operations(conn: sa.Connection, operation_ids: list[str]) -> dict[str, list[sa.RowMapping]]:
    """The attempts of several operations (a page of the ledger) in one query, by operation,
    each in the order they were made."""
    found: dict[str, list[sa.RowMapping]] = {}
    if operation_ids:
        rows = conn.execute(
            sa.select(d).where(d.c.operation_id.in_(operation_ids)).order_by(d.c.id)
        )
        for row in rows:
            found.setdefault(row.operation_id, []).append(row._mapping)
    return found


def settle_in_flight(
    conn: sa.Connection,
    *,
    now: dt.datetime,
    message: str,
    operation_id: str | None = None,
    started_before: dt.datetime | None = None,
) -> list[str]:
    """Mark attempts still ``in_flight`` (of one operation, or started before a time) as
    ``outcome_unknown``: their process is gone and the provider may have acted. The ids of
    the operations they belong to."""
    conditions = [d.c.status == IN_FLIGHT]
    if operation_id is not None:
        conditions.append(d.c.operation_id == operation_id)
    if started_before is not None:
        conditions.append(d.c.started_at < started_before)
    found = conn.execute(sa.select(d.c.id, d.c.operation_id).where(*conditions)).all()
    if found:
        conn.execute(
            d.update()
            .where(d.c.id.in_([row.id for row in found]))
            .values(
                status="outcome_unknown",
                outcome="outcome_unknown",
                message=message,
                completed_at=now,
            )
        )
    return sorted({row.operation_id for row in found})


def find(conn: sa.Connection, tenant_id: str, attempt_id: str) -> sa.RowMapping | None:
    """The tenant's attempt with that id; another tenant's id finds nothing."""
    row = conn.execute(sa.select(d).where(d.c.id == attempt_id, d.c.tenant_id == tenant_id)).first()
    return None if row is None else row._mapping


def page_of(
    conn: sa.Connection,
    tenant_id: str,
    *,
    operation_id: str | None,
    integration_id: str | None,
    capability: str | None,
    status: str | None,
    page: int,
    per_page: int,
    view: Callable[[Any], T],
) -> Page[T]:
    conditions = [d.c.tenant_id == tenant_id]
    for column, value in (
        (d.c.operation_id, operation_id),
        (d.c.integration_id, integration_id),
        (d.c.capability, capability),
        (d.c.status, status),
    ):
        if value is not None:
            conditions.append(column == value)
    return select_page(
        conn, d, conditions, page=page, per_page=per_page, view=lambda row: view(row._mapping)
    )
