"""``/api/v1/routing-rules``, ``/api/v1/operations``, ``/api/v1/delivery-attempts``.

Routing decisions are documented in :mod:`relaykit.routing`, dispatch in
:mod:`relaykit.dispatch` and docs/routing.md.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, delete, get, patch, post
from litestar.params import FromPath, Parameter

from relaykit.ledger import ATTEMPT_STATUSES, OPERATION_STATUSES
from relaykit.pagination import DEFAULT_PER_PAGE
from relaykit.wire import (
    CreateRoutingRule,
    Deleted,
    DeliveryAttempt,
    DeliveryAttemptEnvelope,
    DeliveryAttemptPage,
    Operation,
    OperationEnvelope,
    OperationPage,
    RoutingRule,
    RoutingRuleEnvelope,
    RoutingRulePage,
    UpdateRoutingRule,
)
from relaykit_server.body import Body, SentBody
from relaykit_server.envelope import CONFLICT, INVALID, NOT_FOUND, WITH_BODY, failure, responses
from relaykit_server.params import Page, PerPage
from relaykit_server.requests import ApiRequest, page_parts, read_json
from relaykit_server.state import services_of

CapabilityFilter = Annotated[str | None, Parameter(description="Only this capability.")]
IntegrationFilter = Annotated[str | None, Parameter(description="Only this integration's.")]
RuleId = Annotated[str, Parameter(description="The routing rule's id.")]


def _rule(view: RoutingRule, message: str, status_code: int = 200) -> Response[Any]:
    return Response(RoutingRuleEnvelope(data=view, message=message), status_code=status_code)


def _paging(page: int | None, per_page: int | None) -> tuple[int, int]:
    return (1 if page is None else page, DEFAULT_PER_PAGE if per_page is None else per_page)


class RoutingRulesController(Controller):
    path = "/routing-rules"
    tags = ["routing"]
    dto = SentBody
    return_dto = None

    @get(
        "/",
        summary="List routing rules",
        responses=responses(INVALID),
        operation_id="listRoutingRules",
    )
    async def list_rules(
        self,
        request: ApiRequest,
        capability: CapabilityFilter = None,
        page: Page = None,
        per_page: PerPage = None,
    ) -> RoutingRulePage:
        page_number, size = _paging(page, per_page)
        found = await services_of(request.app).routing.list(
            request.user.tenant_id, capability=capability or None, page=page_number, per_page=size
        )
        meta, links = page_parts(
            request, found, "/api/v1/routing-rules", {"capability": capability}
        )
        return RoutingRulePage(data=found.items, meta=meta, links=links)

    @post(
        "/",
        summary="Create a routing rule",
        responses=responses(WITH_BODY, CONFLICT),
        operation_id="createRoutingRule",
    )
    async def create_rule(
        self, request: ApiRequest, data: Body[CreateRoutingRule]
    ) -> Response[RoutingRuleEnvelope]:
        view = await services_of(request.app).routing.create(request.user.tenant_id, data.fields)
        return _rule(view, "Routing rule created successfully", 201)

    @get(
        "/{rule_id:str}",
        summary="Get a routing rule",
        responses=responses(NOT_FOUND),
        operation_id="getRoutingRule",
    )
    async def get_rule(self, request: ApiRequest, rule_id: FromPath[RuleId]) -> RoutingRuleEnvelope:
        view = await services_of(request.app).routing.get(request.user.tenant_id, rule_id)
        return RoutingRuleEnvelope(data=view)

    @patch(
        "/{rule_id:str}",
        summary="Update a routing rule",
        responses=responses(WITH_BODY, NOT_FOUND, CONFLICT),
        operation_id="updateRoutingRule",
    )
    async def update_rule(
        self, request: ApiRequest, rule_id: FromPath[RuleId], data: Body[UpdateRoutingRule]
    ) -> Response[RoutingRuleEnvelope]:
        view = await services_of(request.app).routing.update(
            request.user.tenant_id, rule_id, data.fields
        )
        return _rule(view, "Routing rule updated successfully")

    @delete(
        "/{rule_id:str}",
        summary="Delete a routing rule",
        status_code=200,
        responses=responses(NOT_FOUND),
        operation_id="deleteRoutingRule",
    )
    async def delete_rule(self, request: ApiRequest, rule_id: FromPath[RuleId]) -> Deleted:
        await services_of(request.app).routing.delete(request.user.tenant_id, rule_id)
        return Deleted(message="Routing rule deleted successfully")


class OperationsController(Controller):
    path = "/operations"
    tags = ["operations"]

    @get(
        "/",
        summary="List operations (the ledger), newest first",
        responses=responses(INVALID),
        operation_id="listOperations",
    )
    async def list_operations(
        self,
        request: ApiRequest,
        capability: CapabilityFilter = None,
        status: Annotated[
            str | None,
            Parameter(
                description="Only operations in this status.",
                schema_extra={"enum": list(OPERATION_STATUSES)},
            ),
        ] = None,
        integration_id: Annotated[
            str | None, Parameter(description="Only operations this integration served.")
        ] = None,
        idempotency_key: Annotated[
            str | None, Parameter(description="Only the operation sent with this key.")
        ] = None,
        page: Page = None,
        per_page: PerPage = None,
    ) -> OperationPage:
        page_number, size = _paging(page, per_page)
        filters = {
            "capability": capability or None,
            "status": status or None,
            "integration_id": integration_id or None,
            "idempotency_key": idempotency_key or None,
        }
        found = await services_of(request.app).operations.list(
            request.user.tenant_id, page=page_number, per_page=size, **filters
        )
        meta, links = page_parts(request, found, "/api/v1/operations", filters)
        items = msgspec.convert(found.items, list[Operation])
        return OperationPage(data=items, meta=meta, links=links)

    @get(
        "/{capability:str}",
        summary="Get an operation",
        responses=responses(NOT_FOUND),
        operation_id="getOperation",
    )
    async def get_operation(
        self,
        request: ApiRequest,
        capability: FromPath[Annotated[str, Parameter(description="The operation's id.")]],
    ) -> OperationEnvelope:
        # The path parameter is the operation's id: Litestar wants one name per path segment,
        # and POST names it after the capability. The document names it operation_id.
        view = await services_of(request.app).operations.get(request.user.tenant_id, capability)
        return OperationEnvelope(data=msgspec.convert(view, Operation))

    # Documented per capability (relaykit_server.openapi): each has its own input and result.
    @post("/{capability:str}", status_code=201, include_in_schema=False)
    async def run_operation(self, request: ApiRequest, capability: FromPath[str]) -> Response[Any]:
        payload = await read_json(request)
        key = request.headers.get("idempotency-key")
        outcome = await services_of(request.app).dispatcher.dispatch(
            request.user.tenant_id, capability, payload, key
        )
        if outcome.success:
            body = {"success": True, "message": outcome.message, "data": outcome.data, "meta": {}}
            return Response(body, status_code=outcome.status_code)
        return failure(outcome.status_code, outcome.message, code=outcome.code, data=outcome.data)


class DeliveryAttemptsController(Controller):
    path = "/delivery-attempts"
    tags = ["delivery"]

    @get(
        "/",
        summary="List delivery attempts",
        responses=responses(INVALID),
        operation_id="listDeliveryAttempts",
    )
    async def list_attempts(
        self,
        request: ApiRequest,
        operation_id: Annotated[
            str | None, Parameter(description="Only this operation's attempts.")
        ] = None,
        integration_id: IntegrationFilter = None,
        capability: CapabilityFilter = None,
        status: Annotated[
            str | None,
            Parameter(
                description="Only attempts in this status.",
                schema_extra={"enum": list(ATTEMPT_STATUSES)},
            ),
        ] = None,
        page: Page = None,
        per_page: PerPage = None,
    ) -> DeliveryAttemptPage:
        page_number, size = _paging(page, per_page)
        filters = {
            "operation_id": operation_id or None,
            "integration_id": integration_id or None,
            "capability": capability or None,
            "status": status or None,
        }
        found = await services_of(request.app).deliveries.list(
            request.user.tenant_id, page=page_number, per_page=size, **filters
        )
        meta, links = page_parts(request, found, "/api/v1/delivery-attempts", filters)
        items = msgspec.convert(found.items, list[DeliveryAttempt])
        return DeliveryAttemptPage(data=items, meta=meta, links=links)

    @get(
        "/{attempt_id:str}",
        summary="Get a delivery attempt",
        responses=responses(NOT_FOUND),
        operation_id="getDeliveryAttempt",
    )
    async def get_attempt(
        self,
        request: ApiRequest,
        attempt_id: FromPath[Annotated[str, Parameter(description="The attempt's id.")]],
    ) -> DeliveryAttemptEnvelope:
        view = await services_of(request.app).deliveries.get(request.user.tenant_id, attempt_id)
        return DeliveryAttemptEnvelope(data=msgspec.convert(view, DeliveryAttempt))
