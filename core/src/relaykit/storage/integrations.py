"""Integration rows: the queries, in SQLAlchemy Core. The rules live in relaykit.integrations."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

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


def _insert_if_new(dialect: Any) -> sa.Insert:
    """An insert that does nothing when the tenant already has a live row for the provider
    (the partial unique index is the conflict target), built once so SQLAlchemy reuses its
    compiled form (docs/performance.md)."""
    statement = (
        dialect.insert(integrations)
        .on_conflict_do_nothing(
            index_elements=[integrations.c.tenant_id, integrations.c.provider],
            index_where=integrations.c.deleted_at.is_(None),
        )
        .returning(integrations.c.id)  # rowcount is not reliable here on psycopg
    )
    return statement


#: relaykit runs on SQLite and PostgreSQL only; both have ON CONFLICT on a partial index.
_INSERT_IF_NEW = {"sqlite": _insert_if_new(sqlite), "postgresql": _insert_if_new(postgresql)}


def insert_if_new(conn: sa.Connection, values: dict[str, Any]) -> bool:
    """Insert the row unless the tenant has a live one for the provider: whether it did.
    One statement, so the check and the insert cannot race."""
    return conn.execute(_INSERT_IF_NEW[conn.dialect.name], values).first() is not None


def update(conn: sa.Connection, integration_id: str, values: dict[str, Any]) -> None:
    conn.execute(integrations.update().where(integrations.c.id == integration_id).values(**values))
