"""Bearer-token authentication for every ``/api/v1`` route.

The middleware sits on the ``/api/v1`` router, so no route under it can be added without it.
A missing, malformed, unknown or revoked token is one answer: 401 in the envelope.

It is a plain ASGI middleware rather than Litestar's ``AbstractAuthenticationMiddleware``:
it runs on every API request, and reading the one header straight from the scope, without
building a connection and a header map, is a measurable part of a cached list's cost
(docs/performance.md). What it sets is what Litestar's sets: ``scope["user"]`` (a
:class:`Principal`, ``request.user`` in handlers) and ``scope["auth"]``.
"""

from __future__ import annotations

import hashlib

import msgspec
from litestar.exceptions import NotAuthorizedException
from litestar.types import ASGIApp, Receive, Scope, Send

from relaykit.storage.database import Database
from relaykit.storage.tenants import authenticate, token_query, token_tenant
from relaykit_server.state import AppResources

MAX_TOKEN_LENGTH = 200


class Principal(msgspec.Struct, frozen=True):
    """Who is calling: the tenant a valid token stands for."""

    tenant_id: str


class BearerTokenMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") == "OPTIONS":  # as Litestar's own auth middleware: preflight
            await self.app(scope, receive, send)
            return
        database = AppResources.of(scope["app"]).database
        # One request, one check for commits by others (Database.read_scope): the token
        # lookup and the request's own cached reads share it.
        with database.read_scope():
            tenant_id = await tenant_of(database, bearer_token(scope))
            if tenant_id is None:
                raise NotAuthorizedException()
            scope["user"] = Principal(tenant_id)
            scope["auth"] = None
            await self.app(scope, receive, send)


def bearer_token(scope: Scope) -> str | None:
    """The token of the request's ``Authorization: Bearer …`` header, if it has one."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH:
                return None
            return token
    return None


async def tenant_of(database: Database, token: str | None) -> str | None:
    """The tenant ``token`` stands for. Where the read cache is on, the answer is kept until
    the next commit (a token created or revoked is seen by the next request), keyed by the
    token's digest, not the token."""
    if token is None:
        return None
    if database.read_cache:
        digest = hashlib.sha256(token.encode()).digest()
        return database.cached(("token", digest), lambda: authenticate(database, token))
    return token_tenant(token, await database.run_fetch(*token_query(token)))
