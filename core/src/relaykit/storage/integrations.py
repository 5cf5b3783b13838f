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


def find(conn: sa.Connection, tenant_id: str, integration_id: str) -> sa.Row[Any] | None:
    """The tenant's live row with that id; another tenant's id finds nothing."""
    if not _ID_PATTERN.match(integration_id):
        return None
    return conn.execute(
        sa.select(integrations).where(
            integrations.c.id == integration_id, integrations.c.tenant_id == tenant_id, live
        )
    ).first()


def exists_for_provider(conn: sa.Connection, tenant_id: str, provider: str) -> bool:
    row = conn.execute(
        sa.select(integrations.c.id).where(
            integrations.c.tenant_id == tenant_id, integrations.c.provider == provider, live
        )
    ).first()
    return row is not None


def insert(conn: sa.Connection, values: dict[str, Any]) -> None:
    conn.execute(integrations.insert().values(**values))


def update(conn: sa.Connection, integration_id: str, values: dict[str, Any]) -> None:
    conn.execute(integrations.update().where(integrations.c.id == integration_id).values(**values))
