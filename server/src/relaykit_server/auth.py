"""Bearer-token authentication for every ``/api/v1`` route.

The middleware sits on the ``/api/v1`` router, so no route under it can be added without it.
A missing, malformed, unknown or revoked token is one answer: 401 in the envelope.

It is a plain ASGI middleware rather than Litestar's ``AbstractAuthenticationMiddleware``:
it runs on every API request, and reading the one header straight from the scope, without
building a connection and a header map, is a measurable part of a cached list's cost
(docs/performance.md). What it sets is what Litestar's sets: ``scope["user"]`` (a
:class:`Principal`, ``request.user`` in handlers) and ``scope["auth"]``; and, for log lines
and audit events, the context's actor (the token id), tenant and, when the path names one,
integration (:mod:`relaykit.context`).
"""

from __future__ import annotations

import msgspec
from litestar.exceptions import NotAuthorizedException
from litestar.types import ASGIApp, Receive, Scope, Send

from relaykit.context import ACTOR, INTEGRATION_ID, TENANT_ID
from relaykit.pagination import is_id
from relaykit_server.state import services_of

MAX_TOKEN_LENGTH = 200


class Principal(msgspec.Struct, frozen=True):
    """Who is calling: the tenant a valid token stands for, and the token's id."""

    tenant_id: str
    token_id: str = ""


class BearerTokenMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") == "OPTIONS":  # as Litestar's own auth middleware: preflight
            await self.app(scope, receive, send)
            return
        services = services_of(scope["app"])
        # One request, one check for commits by others (the read cache's scope): the token
        # lookup and the request's own cached reads share it.
        with services.request_scope():
            caller = await services.authenticate(bearer_token(scope))
            if caller is None:
                raise NotAuthorizedException()
            tenant_id, token_id = caller
            # For the request's log lines and audit events. Not reset here: the request-id
            # middleware (relaykit_server.observability) restores them when the request
            # ends, after its access line, which carries the tenant too.
            ACTOR.set(token_id)
            TENANT_ID.set(tenant_id)
            integration_id = scope["path_params"].get("integration_id")
            if integration_id is not None and is_id(integration_id):
                INTEGRATION_ID.set(integration_id)
            scope["user"] = Principal(tenant_id, token_id)
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
