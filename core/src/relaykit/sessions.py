"""Console sessions: a browser signed in with a tenant's bearer token.

The console (``/console/``, relaykit_server.console) trades the token for a session once;
the browser then holds only the session's cookie. Decisions:

* The cookie carries a random secret (32 bytes); the database keeps its SHA-256 (the row's
  id), so a copy of the database, a log line or a backup signs nobody in.
* A session stands for the token it was opened with, and is checked with it on every use:
  revoking the token (``relaykit tokens revoke``) ends its sessions at once, deleting it or
  its tenant deletes them.
* Each session has its own CSRF token (the synchronizer token every console form carries),
  made with it and never changed while it lasts.
* A session lasts ``RELAYKIT_CONSOLE_SESSION_SECONDS`` from sign-in; an expired one is
  refused and deleted when seen; every sign-in deletes the expired ones of every tenant.
* Several nodes share the sessions through the database: any node serves any browser.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

import msgspec
import sqlalchemy as sa

from relaykit import tenants
from relaykit.ids import utcnow
from relaykit.storage.database import Database
from relaykit.storage.models import console_sessions

#: The longest cookie value looked up (a session's is 43 characters): longer is not one.
MAX_SECRET_LENGTH = 128

_FIND_SQL = (
    "SELECT s.tenant_id, s.token_id, s.csrf_token, s.expires_at, t.revoked_at, n.name "
    "FROM console_sessions s JOIN api_tokens t ON t.id = s.token_id "
    "JOIN tenants n ON n.id = s.tenant_id WHERE s.id = ?"
)


class ConsoleSession(msgspec.Struct, frozen=True):
    """Who a signed-in browser is: the tenant, the token it signed in with, its CSRF token."""

    tenant_id: str
    tenant_name: str
    token_id: str
    csrf_token: str
    expires_at: dt.datetime


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _aware(value: Any) -> dt.datetime:
    """A timestamp as the plain-SQL read returns it (SQLite's text, PostgreSQL's datetime)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


class ConsoleSessions:
    def __init__(self, database: Database, lifetime: float) -> None:
        self.database = database
        self.lifetime = dt.timedelta(seconds=lifetime)

    async def open(self, token: str) -> tuple[str, ConsoleSession] | None:
        """A new session for a valid token: the cookie's secret and the session; ``None``
        for a missing, malformed, unknown or revoked token (the API's own check)."""
        caller = await tenants.authenticate(self.database, token)
        if caller is None:
            return None
        secret = secrets.token_urlsafe(32)
        now = utcnow()
        session = ConsoleSession(
            tenant_id=caller.tenant_id,
            tenant_name="",
            token_id=caller.token_id,
            csrf_token=secrets.token_urlsafe(32),
            expires_at=now + self.lifetime,
        )

        def write(conn: sa.Connection) -> None:
            conn.execute(console_sessions.delete().where(console_sessions.c.expires_at <= now))
            conn.execute(
                console_sessions.insert().values(
                    id=_digest(secret),
                    tenant_id=session.tenant_id,
                    token_id=session.token_id,
                    csrf_token=session.csrf_token,
                    created_at=now,
                    expires_at=session.expires_at,
                )
            )

        await self.database.transaction(write)
        return secret, session

    async def find(self, secret: str | None) -> ConsoleSession | None:
        """The live session a cookie's secret names, or ``None`` (no such session, expired,
        or its token revoked). An expired one is deleted."""
        if not secret or len(secret) > MAX_SECRET_LENGTH:
            return None
        digest = _digest(secret)
        found = await self.database.fetch(_FIND_SQL, (digest,))
        if not found:
            return None
        tenant_id, token_id, csrf_token, expires_at, revoked_at, tenant_name = found[0]
        expires = _aware(expires_at)
        if revoked_at is not None:
            return None
        if expires <= utcnow():
            await self._delete(digest)
            return None
        return ConsoleSession(
            str(tenant_id), str(tenant_name), str(token_id), str(csrf_token), expires
        )

    async def close(self, secret: str | None) -> None:
        """Sign out: the session is deleted (nothing happens for an unknown secret)."""
        if secret and len(secret) <= MAX_SECRET_LENGTH:
            await self._delete(_digest(secret))

    async def _delete(self, digest: str) -> None:
        def write(conn: sa.Connection) -> None:
            conn.execute(console_sessions.delete().where(console_sessions.c.id == digest))

        await self.database.transaction(write)
