"""Integration rows: the queries, in SQLAlchemy Core. The rules live in relaykit.integrations."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from relaykit.storage.models import integrations

_ID_PATTERN = re.compile(r"^[0-9a-z]{26}$")

live = integrations.c.deleted_at.is_(None)


def configured_providers(conn: sa.Connection, tenant_id: str) -> set[str]:
    """Names of the providers the tenant has a (not deleted) integration for."""
    rows = conn.execute(
        sa.select(integrations.c.provider).where(integrations.c.tenant_id == tenant_id, live)
    )
    return {row.provider for row in rows}


def is_id(value: str) -> bool:
    """Whether ``value`` has an id's form (anything else cannot name a row)."""
    return bool(_ID_PATTERN.match(value))


def find(conn: sa.Connection, tenant_id: str, integration_id: str) -> sa.Row[Any] | None:
    """The tenant's live row with that id; another tenant's id finds nothing."""
    if not is_id(integration_id):
        return None
    return conn.execute(
        sa.select(integrations).where(
            integrations.c.id == integration_id, integrations.c.tenant_id == tenant_id, live
        )
    ).first()


# Statements built once: SQLAlchemy then reuses their compiled form, where one built per call
# with .values(**row) costs more to construct than the insert itself (docs/performance.md).
_EXISTS = sa.select(integrations.c.id).where(
    integrations.c.tenant_id == sa.bindparam("tenant_id"),
    integrations.c.provider == sa.bindparam("provider"),
    live,
)
_INSERT = integrations.insert()


def exists_for_provider(conn: sa.Connection, tenant_id: str, provider: str) -> bool:
    row = conn.execute(_EXISTS, {"tenant_id": tenant_id, "provider": provider}).first()
    return row is not None


def insert(conn: sa.Connection, values: dict[str, Any]) -> None:
    conn.execute(_INSERT, values)


def update(conn: sa.Connection, integration_id: str, values: dict[str, Any]) -> None:
    conn.execute(integrations.update().where(integrations.c.id == integration_id).values(**values))
