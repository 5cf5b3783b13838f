"""Integrations: the queries the API needs. (Create, update and lifecycle arrive with [2/8].)"""

from __future__ import annotations

import sqlalchemy as sa

from relaykit.storage.models import integrations


def configured_providers(conn: sa.Connection, tenant_id: str) -> set[str]:
    """Names of the providers the tenant has a (not deleted) integration for."""
    rows = conn.execute(
        sa.select(integrations.c.provider).where(
            integrations.c.tenant_id == tenant_id, integrations.c.deleted_at.is_(None)
        )
    )
    return {row.provider for row in rows}
