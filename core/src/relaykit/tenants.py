"""Tenants and their bearer tokens.

A token reads ``rk_<token id>_<secret>``. Only the SHA-256 of the secret is stored: the
secret is 32 random bytes, so a fast hash is enough (there is nothing to brute-force), and a
database dump yields no usable token. The id part finds the row without scanning, and the
hashes are compared in constant time. An unknown id costs the same comparison as a known one.

The functions that change tenants and tokens take a connection (``db.transaction_blocking(
create_tenant, "acme")`` in the CLI); :func:`authenticate` is the API's token check.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from typing import NamedTuple

import msgspec
import sqlalchemy as sa

from relaykit import audit
from relaykit.errors import ConflictError, NotFoundError, ValidationError
from relaykit.ids import new_id, utcnow
from relaykit.storage import tenants as tenant_rows
from relaykit.storage import tokens as token_rows
from relaykit.storage.database import Database

TENANT_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
TOKEN_PREFIX = "rk_"  # noqa: S105 (a marker, not a secret)
_TOKEN_PATTERN = re.compile(r"^rk_([0-9a-z]{26})_([A-Za-z0-9_-]{43})$")
_DUMMY_HASH = hashlib.sha256(b"relaykit-no-such-token").hexdigest()


class TenantRecord(msgspec.Struct, frozen=True):
    id: str
    name: str
    created_at: dt.datetime


class Caller(NamedTuple):
    """Who a valid bearer token stands for: its tenant, and the token's id (the actor of
    what the request changes)."""

    tenant_id: str
    token_id: str


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
    if tenant_rows.name_taken(conn, name):
        raise ConflictError(f"tenant {name!r} already exists")
    record = TenantRecord(id=new_id(), name=name, created_at=utcnow())
    tenant_rows.insert(conn, record.id, record.name, record.created_at)
    return record


def get_tenant(conn: sa.Connection, name: str) -> TenantRecord:
    row = tenant_rows.by_name(conn, name)
    if row is None:
        raise NotFoundError(f"no tenant named {name!r}")
    return TenantRecord(row.id, row.name, row.created_at)


def list_tenants(conn: sa.Connection) -> list[TenantRecord]:
    return [TenantRecord(r.id, r.name, r.created_at) for r in tenant_rows.all_by_name(conn)]


def create_token(
    conn: sa.Connection, tenant_name: str, *, label: str | None = None
) -> tuple[TokenRecord, str]:
    """A new token for the tenant: its record, and the token itself (shown once, never stored)."""
    tenant = get_tenant(conn, tenant_name)
    token_id = new_id()
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    token_rows.insert(
        conn,
        token_id=token_id,
        tenant_id=tenant.id,
        secret_hash=_hash_secret(secret),
        label=label,
        created_at=now,
    )
    audit.record(  # in the same transaction; the actor is the context's (``cli``)
        conn,
        tenant_id=tenant.id,
        action=audit.TOKEN_CREATED,
        resource_type="token",
        resource_id=token_id,
        details={"label": label},
        now=now,
    )
    record = TokenRecord(token_id, tenant.id, tenant.name, label, now, None)
    return record, f"{TOKEN_PREFIX}{token_id}_{secret}"


def list_tokens(conn: sa.Connection, tenant_name: str) -> list[TokenRecord]:
    tenant = get_tenant(conn, tenant_name)
    return [
        TokenRecord(r.id, r.tenant_id, tenant.name, r.label, r.created_at, r.revoked_at)
        for r in token_rows.of_tenant(conn, tenant.id)
    ]


def revoke_token(conn: sa.Connection, token_or_id: str) -> TokenRecord:
    """Revoke by token id or by the whole token. Revoking twice is harmless."""
    match = _TOKEN_PATTERN.match(token_or_id)
    token_id = match.group(1) if match else token_or_id.strip().lower()
    row = token_rows.with_tenant_name(conn, token_id)
    if row is None:
        raise NotFoundError(f"no token with id {token_id!r}")
    revoked_at = row.revoked_at
    if revoked_at is None:
        revoked_at = utcnow()
        if not token_rows.revoke(conn, token_id, revoked_at):  # a concurrent revoke won
            return revoke_token(conn, token_id)
        audit.record(  # only the first revoke is an event: a repeat changes nothing
            conn,
            tenant_id=row.tenant_id,
            action=audit.TOKEN_REVOKED,
            resource_type="token",
            resource_id=row.id,
            details={"label": row.label},
            now=revoked_at,
        )
    return TokenRecord(
        row.id, row.tenant_id, row.tenant_name, row.label, row.created_at, revoked_at
    )


async def authenticate(db: Database, token: str | None) -> Caller | None:
    """The tenant a bearer token stands for and the token's id, or ``None`` (missing,
    malformed, unknown or revoked).

    Where the read cache is on (SQLite), the answer is kept until the next commit to the
    database by anyone, so a token created or revoked is seen by the next request; it is
    keyed by the token's digest, never the token.
    """
    if token is None:
        return None
    digest = hashlib.sha256(token.encode()).digest()
    return await db.cached(("token", digest), lambda: _check(db, token))


async def _check(db: Database, token: str) -> Caller | None:
    match = _TOKEN_PATTERN.match(token)
    # A malformed token looks up an id no row has, so it costs what an unknown one costs.
    row = await token_rows.check_row(db, match.group(1) if match else "")
    secret = match.group(2) if match else token
    stored = row[1] if row is not None else _DUMMY_HASH
    matches = hmac.compare_digest(_hash_secret(secret), stored)
    if row is None or not matches or row[2] is not None or match is None:
        return None
    return Caller(str(row[0]), match.group(1))
