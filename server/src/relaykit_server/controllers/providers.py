"""``GET /api/v1/integrations/providers``: the catalog, with ``is_configured`` per tenant."""

from __future__ import annotations

from litestar import Controller, get

from relaykit.wire import ProviderList, ProviderSummary
from relaykit_server.envelope import responses
from relaykit_server.requests import ApiRequest
from relaykit_server.state import services_of


class ProvidersController(Controller):
    path = "/integrations/providers"
    tags = ["providers"]

    @get(
        "/",
        summary="List available providers",
        responses=responses(),
        operation_id="listProviders",
    )
    async def list_providers(self, request: ApiRequest) -> ProviderList:
        services = services_of(request.app)
        configured = await services.integrations.configured_providers(request.user.tenant_id)
        data = [
            ProviderSummary(
                name=info.name,
                display_name=info.display_name,
                category=info.category,
                capabilities=info.capabilities,
                credential_schema=info.credential_schema,
                is_configured=info.name in configured,
            )
            for info in (provider.describe() for provider in services.catalog)
        ]
        return ProviderList(data=data, message="Providers retrieved successfully")
