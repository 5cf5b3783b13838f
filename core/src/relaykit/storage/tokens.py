"""The ``api_tokens`` table. What a token is and how it is checked: relaykit.tenants."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from relaykit.storage.database import Database
from relaykit.storage.models import api_tokens, tenants

#: The token check's one query, in plain SQL: it runs on every API request.
_TOKEN_SQL = "SELECT tenant_id, secret_hash, revoked_at FROM api_tokens WHERE id = ?"  # noqa: S105


async def check_row(db: Database, token_id: str) -> Sequence[Any] | None:
    """``(tenant_id, secret_hash, revoked_at)`` of the token with that id, or ``None``."""
    found = await db.fetch(_TOKEN_SQL, (token_id,))
    return found[0] if found else None


def insert(
    conn: sa.Connection,
    *,
    token_id: str,
    tenant_id: str,
    secret_hash: str,
    label: str | None,
    created_at: dt.datetime,
) -> None:
    conn.execute(
        api_tokens.insert().values(
            id=token_id,
            tenant_id=tenant_id,
            secret_hash=secret_hash,
            label=label,
            created_at=created_at,
            revoked_at=None,
        )
    )


def of_tenant(conn: sa.Connection, tenant_id: str) -> list[sa.Row[Any]]:
    """The tenant's tokens, oldest first (id, label, created_at, revoked_at)."""
    return list(
        conn.execute(
            sa.select(api_tokens)
            .where(api_tokens.c.tenant_id == tenant_id)
            .order_by(api_tokens.c.id)
        )
    )


def with_tenant_name(conn: sa.Connection, token_id: str) -> sa.Row[Any] | None:
    """The token's row with its tenant's name (``tenant_name``), or ``None``."""
    return conn.execute(
        sa.select(api_tokens, tenants.c.name.label("tenant_name"))
        .join(tenants, tenants.c.id == api_tokens.c.tenant_id)
        .where(api_tokens.c.id == token_id)
    ).first()


def revoke(conn: sa.Connection, token_id: str, now: dt.datetime) -> bool:
    """Revoke the token unless it already is: whether this call revoked it."""
    result = conn.execute(
        api_tokens.update()
        .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return result.rowcount == 1
