"""``/api/v1/integrations``: the contract's integration endpoints.

Bodies are declared as :mod:`relaykit.wire` Structs and decoded by
:class:`~relaykit_server.body.SentBody`; the rules themselves live in
:mod:`relaykit.validation` and :mod:`relaykit.integrations`, which report every problem of
a request at once in the contract's 422 shape.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Response, delete, get, patch, post
from litestar.params import FromPath, Parameter

from relaykit.integrations import IntegrationService
from relaykit.lifecycle import Status
from relaykit.pagination import DEFAULT_PER_PAGE
from relaykit.wire import (
    UNSET,
    CreateIntegration,
    Deleted,
    Integration,
    IntegrationEnvelope,
    IntegrationPage,
    UpdateIntegration,
)
from relaykit_server.body import Body, SentBody
from relaykit_server.envelope import (
    CONFLICT,
    INVALID,
    KEY_PROVIDER,
    NOT_FOUND,
    WITH_BODY,
    responses,
)
from relaykit_server.params import Page, PerPage
from relaykit_server.requests import ApiRequest, cached_read, page_parts
from relaykit_server.state import services_of

BASE_PATH = "/api/v1/integrations"

StatusFilter = Annotated[
    str | None,
    Parameter(
        description="Only integrations in this status.",
        schema_extra={"enum": [status.value for status in Status]},
    ),
]
CategoryFilter = Annotated[
    str | None,
    Parameter(description="Only integrations of providers in this category (`payment` …)."),
]
IntegrationId = Annotated[str, Parameter(description="The integration's id.")]


def service_of(request: ApiRequest) -> IntegrationService:
    return services_of(request.app).integrations


def _one(view: Integration, message: str | None = None, status_code: int = 200) -> Response[Any]:
    envelope = IntegrationEnvelope(data=view, message=UNSET if message is None else message)
    return Response(envelope, status_code=status_code)


class IntegrationsController(Controller):
    path = "/integrations"
    tags = ["integrations"]
    dto = SentBody
    return_dto = None

    @get(
        "/",
        summary="List integrations",
        responses=responses(INVALID),
        operation_id="listIntegrations",
    )
    async def list_integrations(
        self,
        request: ApiRequest,
        status: StatusFilter = None,
        category: CategoryFilter = None,
        page: Page = None,
        per_page: PerPage = None,
    ) -> Response[IntegrationPage]:
        async def build() -> Response[Any]:
            found = await service_of(request).list(
                request.user.tenant_id,
                status=status or None,
                category=category or None,
                page=1 if page is None else page,
                per_page=DEFAULT_PER_PAGE if per_page is None else per_page,
            )
            meta, links = page_parts(
                request, found, BASE_PATH, {"status": status, "category": category}
            )
            return Response(IntegrationPage(data=found.items, meta=meta, links=links))

        return await cached_read(request, build)

    @post(
        "/",
        summary="Configure an integration",
        responses=responses(WITH_BODY, KEY_PROVIDER),
        operation_id="createIntegration",
    )
    async def create_integration(
        self, request: ApiRequest, data: Body[CreateIntegration]
    ) -> Response[IntegrationEnvelope]:
        view = await service_of(request).create(request.user.tenant_id, data.fields)
        return _one(view, "Integration configured successfully", 201)

    @get(
        "/{integration_id:str}",
        summary="Get integration details",
        responses=responses(NOT_FOUND),
        operation_id="getIntegration",
    )
    async def get_integration(
        self, request: ApiRequest, integration_id: FromPath[IntegrationId]
    ) -> Response[IntegrationEnvelope]:
        async def build() -> Response[Any]:
            return _one(await service_of(request).get(request.user.tenant_id, integration_id))

        return await cached_read(request, build)

    @patch(
        "/{integration_id:str}",
        summary="Update an integration",
        description="A `credentials` object that sends every sensitive field of the "
        "provider replaces the sealed credentials without reading the old ones. One that "
        "would need the stored ones and cannot open them is a 409 `credentials_unreadable` "
        "(send every sensitive field), or a 503 `key_provider_unavailable`.",
        responses=responses(WITH_BODY, NOT_FOUND, CONFLICT, KEY_PROVIDER),
        operation_id="updateIntegration",
    )
    async def update_integration(
        self,
        request: ApiRequest,
        integration_id: FromPath[IntegrationId],
        data: Body[UpdateIntegration],
    ) -> Response[IntegrationEnvelope]:
        view = await service_of(request).update(request.user.tenant_id, integration_id, data.fields)
        return _one(view, "Integration updated successfully")

    @delete(
        "/{integration_id:str}",
        summary="Delete an integration",
        status_code=200,
        responses=responses(NOT_FOUND, CONFLICT),
        operation_id="deleteIntegration",
    )
    async def delete_integration(
        self, request: ApiRequest, integration_id: FromPath[IntegrationId]
    ) -> Deleted:
        await service_of(request).delete(request.user.tenant_id, integration_id)
        return Deleted(message="Integration deleted successfully")

    @post(
        "/{integration_id:str}/activate",
        summary="Activate an integration",
        status_code=200,
        responses=responses(NOT_FOUND, CONFLICT),
        operation_id="activateIntegration",
    )
    async def activate_integration(
        self, request: ApiRequest, integration_id: FromPath[IntegrationId]
    ) -> Response[IntegrationEnvelope]:
        view = await service_of(request).activate(request.user.tenant_id, integration_id)
        return _one(view, "Integration activated successfully")

    @post(
        "/{integration_id:str}/disable",
        summary="Disable an integration",
        status_code=200,
        responses=responses(NOT_FOUND, CONFLICT),
        operation_id="disableIntegration",
    )
    async def disable_integration(
        self, request: ApiRequest, integration_id: FromPath[IntegrationId]
    ) -> Response[IntegrationEnvelope]:
        view = await service_of(request).disable(request.user.tenant_id, integration_id)
        return _one(view, "Integration disabled successfully")
