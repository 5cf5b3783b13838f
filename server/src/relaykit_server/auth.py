"""Bearer-token authentication for every ``/api/v1`` route.

The middleware sits on the ``/api/v1`` router, so no route under it can be added without it.
A missing, malformed, unknown or revoked token is one answer: 401 in the envelope.
"""

from __future__ import annotations

import msgspec
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from relaykit.storage.tenants import token_query, token_tenant
from relaykit_server.state import AppResources


class Principal(msgspec.Struct, frozen=True):
    """Who is calling: the tenant a valid token stands for."""

    tenant_id: str


class BearerTokenMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > 200:
            raise NotAuthorizedException()
        resources = AppResources.of(connection.app)
        # Cached until the next commit: a token created or revoked is seen on the next request.
        found = await resources.database.run_fetch(*token_query(token), cache=True)
        tenant_id = token_tenant(token, found)
        if tenant_id is None:
            raise NotAuthorizedException()
        return AuthenticationResult(user=Principal(tenant_id), auth=None)
