"""``/api/v1/routing-rules``, ``/api/v1/operations/{capability}``, ``/api/v1/delivery-attempts``.

Routing decisions are documented in :mod:`relaykit.routing`, dispatch in
:mod:`relaykit.dispatch` and docs/routing.md.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Response, delete, get, patch, post
from litestar.params import FromPath

from relaykit_server.envelope import failure, success
from relaykit_server.requests import ApiRequest, paginated, paging, read_json
from relaykit_server.state import services_of


class RoutingRulesController(Controller):
    path = "/routing-rules"
    tags = ["routing"]

    @get("/", summary="List routing rules")
    async def list_rules(self, request: ApiRequest) -> Response[Any]:
        page_number, per_page = paging(request)
        capability = request.query_params.get("capability") or None
        page = await services_of(request.app).routing.list(
            request.user.tenant_id,
            capability=capability,
            page=page_number,
            per_page=per_page,
        )
        return paginated(request, page, "/api/v1/routing-rules", {"capability": capability})

    @post("/", summary="Create a routing rule")
    async def create_rule(self, request: ApiRequest) -> Response[Any]:
        payload = await read_json(request)
        view = await services_of(request.app).routing.create(request.user.tenant_id, payload)
        return success(view, message="Routing rule created successfully", status_code=201)

    @get("/{rule_id:str}", summary="Get a routing rule")
    async def get_rule(self, request: ApiRequest, rule_id: FromPath[str]) -> Response[Any]:
        view = await services_of(request.app).routing.get(request.user.tenant_id, rule_id)
        return success(view)

    @patch("/{rule_id:str}", summary="Update a routing rule")
    async def update_rule(self, request: ApiRequest, rule_id: FromPath[str]) -> Response[Any]:
        payload = await read_json(request)
        view = await services_of(request.app).routing.update(
            request.user.tenant_id, rule_id, payload
        )
        return success(view, message="Routing rule updated successfully")

    @delete("/{rule_id:str}", summary="Delete a routing rule", status_code=200)
    async def delete_rule(self, request: ApiRequest, rule_id: FromPath[str]) -> Response[Any]:
        await services_of(request.app).routing.delete(request.user.tenant_id, rule_id)
        return success(message="Routing rule deleted successfully", include_data=False)


class OperationsController(Controller):
    path = "/operations"
    tags = ["operations"]

    @get("/", summary="List operations (the ledger), newest first")
    async def list_operations(self, request: ApiRequest) -> Response[Any]:
        page_number, per_page = paging(request)
        filters = {
            name: request.query_params.get(name) or None
            for name in ("capability", "status", "integration_id", "idempotency_key")
        }
        page = await services_of(request.app).operations.list(
            request.user.tenant_id, page=page_number, per_page=per_page, **filters
        )
        return paginated(request, page, "/api/v1/operations", filters)

    @get("/{capability:str}", summary="Get an operation")
    async def get_operation(self, request: ApiRequest, capability: FromPath[str]) -> Response[Any]:
        # The path parameter is the operation's id: Litestar wants one name per path segment,
        # and POST names it after the capability.
        view = await services_of(request.app).operations.get(request.user.tenant_id, capability)
        return success(view)

    @post("/{capability:str}", summary="Run an operation through routing", status_code=201)
    async def run_operation(self, request: ApiRequest, capability: FromPath[str]) -> Response[Any]:
        payload = await read_json(request)
        key = request.headers.get("idempotency-key")
        outcome = await services_of(request.app).dispatcher.dispatch(
            request.user.tenant_id, capability, payload, key
        )
        if outcome.success:
            return success(outcome.data, message=outcome.message, status_code=outcome.status_code)
        return failure(outcome.status_code, outcome.message, code=outcome.code, data=outcome.data)


class DeliveryAttemptsController(Controller):
    path = "/delivery-attempts"
    tags = ["delivery"]

    @get("/", summary="List delivery attempts")
    async def list_attempts(self, request: ApiRequest) -> Response[Any]:
        page_number, per_page = paging(request)
        filters = {
            name: request.query_params.get(name) or None
            for name in ("operation_id", "integration_id", "capability", "status")
        }
        page = await services_of(request.app).deliveries.list(
            request.user.tenant_id,
            page=page_number,
            per_page=per_page,
            **filters,
        )
        return paginated(request, page, "/api/v1/delivery-attempts", filters)

    @get("/{attempt_id:str}", summary="Get a delivery attempt")
    async def get_attempt(self, request: ApiRequest, attempt_id: FromPath[str]) -> Response[Any]:
        view = await services_of(request.app).deliveries.get(request.user.tenant_id, attempt_id)
        return success(view)
