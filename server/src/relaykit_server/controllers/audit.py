"""The audit trail's reads: ``GET /api/v1/audit-events`` (the tenant's whole trail, filtered)
and ``GET /api/v1/integrations/{integration_id}/events`` (one integration's). The rules are in
:mod:`relaykit.audit`; docs/audit.md is the guide."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.params import FromPath, Parameter

from relaykit.audit import ACTIONS
from relaykit.pagination import DEFAULT_PER_PAGE
from relaykit.wire import AuditEventPage
from relaykit_server.envelope import INVALID, NOT_FOUND, responses
from relaykit_server.params import Page, PerPage
from relaykit_server.requests import ApiRequest, page_parts
from relaykit_server.state import services_of

_TIME = (
    "An ISO 8601 timestamp (`2026-01-10T08:45:00Z`; without an offset, UTC; percent-encode a `+`)"
)


class AuditEventsController(Controller):
    path = "/audit-events"
    tags = ["audit"]

    @get(
        "/",
        summary="List the tenant's audit events, newest first",
        description="Every change to the tenant's integrations, routing rules and tokens: who "
        "(`actor`: a token id, `worker` or `cli`), in which request, what changed (`details`: "
        "field names, never a credential's value), the status before and after. `seq`, "
        "`prev_digest` and `digest` chain the events (`relaykit audit verify`).",
        responses=responses(INVALID),
        operation_id="listAuditEvents",
    )
    async def list_events(
        self,
        request: ApiRequest,
        integration_id: Annotated[
            str | None, Parameter(description="Only events about this integration.")
        ] = None,
        action: Annotated[
            str | None,
            Parameter(description="Only events of this action.", schema_extra={"enum": ACTIONS}),
        ] = None,
        actor: Annotated[
            str | None,
            Parameter(description="Only events by this actor: a token id, `worker` or `cli`."),
        ] = None,
        since: Annotated[
            str | None, Parameter(description=f"Only events at or after this time. {_TIME}.")
        ] = None,
        until: Annotated[
            str | None, Parameter(description=f"Only events at or before this time. {_TIME}.")
        ] = None,
        page: Page = None,
        per_page: PerPage = None,
    ) -> AuditEventPage:
        filters = {
            "integration_id": integration_id or None,
            "action": action or None,
            "actor": actor or None,
            "since": since or None,
            "until": until or None,
        }
        found = await services_of(request.app).audit.list(
            request.user.tenant_id,
            page=1 if page is None else page,
            per_page=DEFAULT_PER_PAGE if per_page is None else per_page,
            **filters,
        )
        meta, links = page_parts(request, found, "/api/v1/audit-events", filters)
        return AuditEventPage(data=found.items, meta=meta, links=links)


class IntegrationEventsController(Controller):
    path = "/integrations"
    tags = ["audit"]

    @get(
        "/{integration_id:str}/events",
        summary="List an integration's audit events, newest first",
        description="The integration's own trail; a deleted integration's events stay "
        "readable here.",
        responses=responses(NOT_FOUND, INVALID),
        operation_id="listIntegrationEvents",
    )
    async def list_integration_events(
        self,
        request: ApiRequest,
        integration_id: FromPath[Annotated[str, Parameter(description="The integration's id.")]],
        page: Page = None,
        per_page: PerPage = None,
    ) -> AuditEventPage:
        found = await services_of(request.app).audit.integration_events(
            request.user.tenant_id,
            integration_id,
            page=1 if page is None else page,
            per_page=DEFAULT_PER_PAGE if per_page is None else per_page,
        )
        base = f"/api/v1/integrations/{integration_id}/events"
        meta, links = page_parts(request, found, base, {})
        return AuditEventPage(data=found.items, meta=meta, links=links)
