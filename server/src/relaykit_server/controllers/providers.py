"""``GET /api/v1/integrations/providers``: the catalog, with ``is_configured`` per tenant."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, get

from relaykit_server.auth import Principal
from relaykit_server.envelope import success
from relaykit_server.state import services_of


class ProviderView(msgspec.Struct, frozen=True):
    name: str
    display_name: str
    category: str
    capabilities: list[str]
    credential_schema: dict[str, Any]
    is_configured: bool


class ProvidersController(Controller):
    path = "/integrations/providers"
    tags = ["providers"]

    @get("/", summary="List available providers")
    async def list_providers(self, request: Request[Principal, Any, Any]) -> Response[Any]:
        services = services_of(request.app)
        configured = await services.integrations.configured_providers(request.user.tenant_id)
        data = [
            ProviderView(
                name=info.name,
                display_name=info.display_name,
                category=info.category,
                capabilities=info.capabilities,
                credential_schema=msgspec.to_builtins(info.credential_schema),
                is_configured=info.name in configured,
            )
            for info in (provider.describe() for provider in services.catalog)
        ]
        return success(data, message="Providers retrieved successfully")
