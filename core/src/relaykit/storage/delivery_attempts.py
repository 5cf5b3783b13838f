"""The ``delivery_attempts`` table: one row per try of an operation with one integration."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa

from relaykit.pagination import Page
from relaykit.storage.models import delivery_attempts
from relaykit.storage.pages import select_page

T = TypeVar("T")

d = delivery_attempts
# Built once, so SQLAlchemy reuses the compiled statement (dispatch's hot path).
_INSERT = d.insert()


def insert(conn: sa.Connection, attempts: Sequence[Mapping[str, Any]]) -> None:
    if len(attempts) == 1:  # the common case: one row, without executemany's machinery
        conn.execute(_INSERT, dict(attempts[0]))
    elif attempts:
        conn.execute(_INSERT, [dict(a) for a in attempts])


def find(conn: sa.Connection, tenant_id: str, attempt_id: str) -> sa.RowMapping | None:
    """The tenant's attempt with that id; another tenant's id finds nothing."""
    row = conn.execute(sa.select(d).where(d.c.id == attempt_id, d.c.tenant_id == tenant_id)).first()
    return None if row is None else row._mapping


def page_of(
    conn: sa.Connection,
    tenant_id: str,
    *,
    integration_id: str | None,
    capability: str | None,
    status: str | None,
    page: int,
    per_page: int,
    view: Callable[[Any], T],
) -> Page[T]:
    conditions = [d.c.tenant_id == tenant_id]
    for column, value in (
        (d.c.integration_id, integration_id),
        (d.c.capability, capability),
        (d.c.status, status),
    ):
        if value is not None:
            conditions.append(column == value)
    return select_page(
        conn, d, conditions, page=page, per_page=per_page, view=lambda row: view(row._mapping)
    )
