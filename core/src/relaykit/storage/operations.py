"""The ``operations`` table: one row per request to do something, however many tries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from relaykit.storage.models import operations

o = operations
# Built once, so SQLAlchemy reuses the compiled statement (dispatch's hot path).
_INSERT = o.insert()


def by_idempotency_key(conn: sa.Connection, tenant_id: str, key: str) -> sa.Row[Any] | None:
    """The tenant's operation recorded under ``key``: its status, request hash and stored
    response, or ``None``."""
    return conn.execute(
        sa.select(o.c.status, o.c.request_hash, o.c.response).where(
            o.c.tenant_id == tenant_id, o.c.idempotency_key == key
        )
    ).first()


def insert(conn: sa.Connection, values: Mapping[str, Any]) -> None:
    """Record an operation. A second one under the same tenant and idempotency key raises
    SQLAlchemy's IntegrityError (the partial unique index)."""
    conn.execute(_INSERT, dict(values))


def complete(conn: sa.Connection, operation_id: str, values: Mapping[str, Any]) -> None:
    conn.execute(o.update().where(o.c.id == operation_id).values(**values))
