"""One page of a table's rows: the list query of the routing-rule and delivery-attempt
endpoints (the integration list, the hottest, is plain SQL in storage.integrations)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa

from relaykit.pagination import Page

T = TypeVar("T")


def select_page(
    conn: sa.Connection,
    table: sa.Table,
    conditions: Sequence[sa.ColumnElement[bool]],
    *,
    page: int,
    per_page: int,
    view: Callable[[Any], T],
    newest_first: bool = False,
) -> Page[T]:
    """One page of ``table``'s rows matching ``conditions``, in id (creation) order (or
    the newest first), each through ``view``, and the total."""
    total = conn.execute(
        sa.select(sa.func.count()).select_from(table).where(*conditions)
    ).scalar_one()
    rows = conn.execute(
        sa.select(table)
        .where(*conditions)
        .order_by(table.c.id.desc() if newest_first else table.c.id)
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    return Page([view(row) for row in rows], int(total), page, per_page)
