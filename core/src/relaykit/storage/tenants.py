"""Tenants and their bearer tokens.

A token reads ``rk_<token id>_<secret>``. Only the SHA-256 of the secret is stored: the
secret is 32 random bytes, so a fast hash is enough (there is nothing to brute-force), and a
database dump yields no usable token. The id part finds the row without scanning, and the
hashes are compared in constant time. An unknown id costs the same comparison as a known one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import sqlalchemy as sa

from relaykit.errors import ConflictError, NotFoundError, ValidationError
from relaykit.ids import new_id, utcnow
from relaykit.storage.models import api_tokens, tenants

if TYPE_CHECKING:
    from relaykit.storage.database import Database

TENANT_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
TOKEN_PREFIX = "rk_"  # noqa: S105 (a marker, not a secret)
_TOKEN_PATTERN = re.compile(r"^rk_([0-9a-z]{26})_([A-Za-z0-9_-]{43})$")
_DUMMY_HASH = hashlib.sha256(b"relaykit-no-such-token").hexdigest()


class TenantRecord(msgspec.Struct, frozen=True):
    id: str
    name: str
    created_at: dt.datetime


class TokenRecord(msgspec.Struct, frozen=True):
    id: str
    tenant_id: str
    tenant_name: str
    label: str | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_tenant(conn: sa.Connection, name: str) -> TenantRecord:
    if not TENANT_NAME_PATTERN.match(name):
        raise ValidationError(
            {"name": ["Use 1-64 lowercase letters, digits, '.', '_' or '-', starting alnum."]}
        )
    if conn.execute(sa.select(tenants.c.id).where(tenants.c.name == name)).first():
        raise ConflictError(f"tenant {name!r} already exists")
    record = TenantRecord(id=new_id(), name=name, created_at=utcnow())
    conn.execute(tenants.insert().values(msgspec.structs.asdict(record)))
    return record


def get_tenant(conn: sa.Connection, name: str) -> TenantRecord:
    row = conn.execute(sa.select(tenants).where(tenants.c.name == name)).first()
    if row is None:
        raise NotFoundError(f"no tenant named {name!r}")
    return TenantRecord(row.id, row.name, row.created_at)


def list_tenants(conn: sa.Connection) -> list[TenantRecord]:
    rows = conn.execute(sa.select(tenants).order_by(tenants.c.name))
    return [TenantRecord(r.id, r.name, r.created_at) for r in rows]


def create_token(
    conn: sa.Connection, tenant_name: str, *, label: str | None = None
) -> tuple[TokenRecord, str]:
    """A new token for the tenant: its record, and the token itself (shown once, never stored)."""
    tenant = get_tenant(conn, tenant_name)
    token_id = new_id()
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    conn.execute(
        api_tokens.insert().values(
            id=token_id,
            tenant_id=tenant.id,
            secret_hash=_hash_secret(secret),
            label=label,
            created_at=now,
            revoked_at=None,
        )
    )
    record = TokenRecord(token_id, tenant.id, tenant.name, label, now, None)
    return record, f"{TOKEN_PREFIX}{token_id}_{secret}"


#: The token check's one query, in plain SQL for :meth:`Database.fetch` (it runs on every
#: request; see docs/performance.md).
TOKEN_SQL = "SELECT tenant_id, secret_hash, revoked_at FROM api_tokens WHERE id = ?"  # noqa: S105


def token_query(token: str) -> tuple[str, tuple[str]]:
    """The statement and parameters that fetch the row a bearer token names (by its id part;
    a malformed token queries an id no row has, so it costs what an unknown one costs)."""
    match = _TOKEN_PATTERN.match(token)
    return TOKEN_SQL, (match.group(1) if match else "",)


def token_tenant(token: str, rows: Sequence[Any]) -> str | None:
    """The tenant id ``token`` stands for, given what :func:`token_query` fetched, or ``None``
    (unknown, malformed or revoked). The secret is compared in constant time."""
    match = _TOKEN_PATTERN.match(token)
    secret = match.group(2) if match else token
    row = rows[0] if match and rows else None
    stored = row[1] if row is not None else _DUMMY_HASH
    matches = hmac.compare_digest(_hash_secret(secret), stored)
    if row is None or not matches or row[2] is not None:
        return None
    return str(row[0])


def authenticate(database: Database, token: str) -> str | None:
    """The tenant id a bearer token stands for, or ``None`` (unknown, malformed or revoked)."""
    return token_tenant(token, database.fetch(*token_query(token)))


def list_tokens(conn: sa.Connection, tenant_name: str) -> list[TokenRecord]:
    tenant = get_tenant(conn, tenant_name)
    rows = conn.execute(
        sa.select(api_tokens).where(api_tokens.c.tenant_id == tenant.id).order_by(api_tokens.c.id)
    )
    return [
        TokenRecord(r.id, r.tenant_id, tenant.name, r.label, r.created_at, r.revoked_at)
        for r in rows
    ]


def revoke_token(conn: sa.Connection, token_or_id: str) -> TokenRecord:
    """Revoke by token id or by the whole token. Revoking twice is harmless."""
    match = _TOKEN_PATTERN.match(token_or_id)
    token_id = match.group(1) if match else token_or_id.strip().lower()
    row = conn.execute(
        sa.select(api_tokens, tenants.c.name.label("tenant_name"))
        .join(tenants, tenants.c.id == api_tokens.c.tenant_id)
        .where(api_tokens.c.id == token_id)
    ).first()
    if row is None:
        raise NotFoundError(f"no token with id {token_id!r}")
    revoked_at = row.revoked_at
    if revoked_at is None:
        revoked_at = utcnow()
        conn.execute(
            api_tokens.update().where(api_tokens.c.id == token_id).values(revoked_at=revoked_at)
        )
    return TokenRecord(
        row.id, row.tenant_id, row.tenant_name, row.label, row.created_at, revoked_at
    )
