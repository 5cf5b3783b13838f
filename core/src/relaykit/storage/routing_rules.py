"""The ``routing_rules`` table, and the route query that joins it to ``integrations``.
The rules about rules live in relaykit.routing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa

from relaykit.lifecycle import Status
from relaykit.pagination import Page
from relaykit.storage.database import Database, driver_sql
from relaykit.storage.models import routing_rules
from relaykit.storage.pages import select_page

T = TypeVar("T")

r = routing_rules


def find(conn: sa.Connection, tenant_id: str, rule_id: str) -> sa.Row[Any] | None:
    """The tenant's rule with that id; another tenant's id finds nothing."""
    return conn.execute(sa.select(r).where(r.c.id == rule_id, r.c.tenant_id == tenant_id)).first()


def insert(conn: sa.Connection, values: Mapping[str, Any]) -> None:
    conn.execute(r.insert().values(**values))


def update(
    conn: sa.Connection, rule_id: str, values: Mapping[str, Any], *, seen: dt.datetime
) -> bool:
    """Write the rule if it is still as it was read (its ``updated_at`` is ``seen``): whether
    it was. A concurrent change is never written over."""
    result = conn.execute(
        r.update().where(r.c.id == rule_id, r.c.updated_at == seen).values(**values)
    )
    return result.rowcount == 1


def delete(conn: sa.Connection, rule_id: str) -> sa.Row[Any] | None:
    """Delete the rule: the row as it was when deleted, or ``None`` if it was already gone
    (a concurrent delete won)."""
    return conn.execute(r.delete().where(r.c.id == rule_id).returning(*r.c)).first()


def clear_default(
    conn: sa.Connection, tenant_id: str, capability: str, now: dt.datetime, *, keep: str = ""
) -> None:
    """Unset the default flag of the tenant's other rules for ``capability``."""
    conn.execute(
        r.update()
        .where(
            r.c.tenant_id == tenant_id,
            r.c.capability == capability,
            r.c.is_default.is_(True),
            r.c.id != keep,
        )
        .values(is_default=False, updated_at=now)
    )


def page_of(
    conn: sa.Connection,
    tenant_id: str,
    *,
    capability: str | None,
    page: int,
    per_page: int,
    view: Callable[[Any], T],
) -> Page[T]:
    conditions = [r.c.tenant_id == tenant_id]
    if capability is not None:
        conditions.append(r.c.capability == capability)
    return select_page(conn, r, conditions, page=page, per_page=per_page, view=view)


#: The tenant's rules for a capability (default first, then by priority, then oldest), each
#: joined to those of its integration and fallback that are active right now: one
#: statement, so the route is one snapshot. Each row: rule id, integration id, fallback id,
#: then the active integration's id, provider, enabled capabilities, public credentials,
#: sealed credentials and credentials version (all null when neither is active).
_ROUTE_SQL = (
    "SELECT r.id, r.integration_id, r.fallback_integration_id,"
    " i.id, i.provider, i.enabled_capabilities, i.public_credentials, i.sealed_credentials,"
    " i.credentials_version"
    " FROM routing_rules r LEFT JOIN integrations i"
    " ON i.id IN (r.integration_id, r.fallback_integration_id) AND i.tenant_id = r.tenant_id"
    " AND i.status = 'active' AND i.deleted_at IS NULL"
    " WHERE r.tenant_id = ? AND r.capability = ?"
    " ORDER BY r.is_default DESC, r.priority DESC, r.id"
)
assert Status.ACTIVE.value == "active"


async def route_rows(db: Database, tenant_id: str, capability: str) -> list[Sequence[Any]]:
    """The route's rows (see :data:`_ROUTE_SQL`) in a read of their own: the dispatch's hot
    read, in plain SQL."""
    return await db.fetch(_ROUTE_SQL, (tenant_id, capability))


def route_rows_in(conn: sa.Connection, tenant_id: str, capability: str) -> list[Sequence[Any]]:
    """:func:`route_rows` inside a transaction the caller holds."""
    return list(conn.exec_driver_sql(driver_sql(conn, _ROUTE_SQL), (tenant_id, capability)).all())
