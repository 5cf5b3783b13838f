"""``/api/v1/integrations``: the contract's integration endpoints.

Bodies are read raw and decoded here (not by Litestar's signature model) so that every
problem, of any field, comes back at once in the contract's 422 shape; the rules themselves
live in :mod:`relaykit.validation` and :mod:`relaykit.integrations`.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Response, delete, get, patch, post
from litestar.params import FromPath

from relaykit.integrations import IntegrationService
from relaykit_server.envelope import success
from relaykit_server.requests import ApiRequest, cached_read, paginated, paging, read_json
from relaykit_server.state import services_of

BASE_PATH = "/api/v1/integrations"


def service_of(request: ApiRequest) -> IntegrationService:
    return services_of(request.app).integrations


class IntegrationsController(Controller):
    path = "/integrations"
    tags = ["integrations"]

    @get("/", summary="List integrations")
    async def list_integrations(self, request: ApiRequest) -> Response[Any]:
        async def build() -> Response[Any]:
            page_number, per_page = paging(request)
            status = request.query_params.get("status") or None
            category = request.query_params.get("category") or None
            page = await service_of(request).list(
                request.user.tenant_id,
                status=status,
                category=category,
                page=page_number,
                per_page=per_page,
            )
            return paginated(request, page, BASE_PATH, {"status": status, "category": category})

        return await cached_read(request, build)

    @post("/", summary="Configure an integration")
    async def create_integration(self, request: ApiRequest) -> Response[Any]:
        payload = await read_json(request)
        view = await service_of(request).create(request.user.tenant_id, payload)
        return success(view, message="Integration configured successfully", status_code=201)

    @get("/{integration_id:str}", summary="Get integration details")
    async def get_integration(
        self, request: ApiRequest, integration_id: FromPath[str]
    ) -> Response[Any]:
        async def build() -> Response[Any]:
            return success(await service_of(request).get(request.user.tenant_id, integration_id))

        return await cached_read(request, build)

    @patch("/{integration_id:str}", summary="Update an integration")
    async def update_integration(
        self, request: ApiRequest, integration_id: FromPath[str]
    ) -> Response[Any]:
        payload = await read_json(request)
        view = await service_of(request).update(request.user.tenant_id, integration_id, payload)
        return success(view, message="Integration updated successfully")

    @delete("/{integration_id:str}", summary="Delete an integration", status_code=200)
    async def delete_integration(
        self, request: ApiRequest, integration_id: FromPath[str]
    ) -> Response[Any]:
        await service_of(request).delete(request.user.tenant_id, integration_id)
        return success(message="Integration deleted successfully", include_data=False)

    @post("/{integration_id:str}/activate", summary="Activate an integration", status_code=200)
    async def activate_integration(
        self, request: ApiRequest, integration_id: FromPath[str]
    ) -> Response[Any]:
        view = await service_of(request).activate(request.user.tenant_id, integration_id)
        return success(view, message="Integration activated successfully")

    @post("/{integration_id:str}/disable", summary="Disable an integration", status_code=200)
    async def disable_integration(
        self, request: ApiRequest, integration_id: FromPath[str]
    ) -> Response[Any]:
        view = await service_of(request).disable(request.user.tenant_id, integration_id)
        return success(view, message="Integration disabled successfully")
