"""Inbound webhooks: the receiver ``POST /webhooks/{integration_id}`` (outside ``/api/v1``,
no bearer token: the provider's signature is the authentication), and the API's reads
``/api/v1/webhook-events`` and ``/api/v1/integrations/{integration_id}/webhook``.

The rules (lookup, signature check, dedupe, applying events) are in
:mod:`relaykit.webhook_intake`; this module only hands it the request as it arrived: the raw
body, the headers lower-cased, and the URL as the provider called it (``RELAYKIT_PUBLIC_URL``
followed by the path and query when set, so a URL-signed scheme checks out behind a proxy).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.exceptions import HTTPException
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, Parameter
from litestar.types import Scope

from relaykit.context import INTEGRATION_ID
from relaykit.pagination import DEFAULT_PER_PAGE, is_id
from relaykit.wire import (
    ErrorBody,
    IntegrationWebhookEnvelope,
    WebhookEvent,
    WebhookEventEnvelope,
    WebhookEventPage,
    WebhookReceipt,
    WebhookReceived,
)
from relaykit_server.envelope import INVALID, KEY_PROVIDER, NOT_FOUND, responses
from relaykit_server.params import Page, PerPage
from relaykit_server.requests import ApiRequest, page_parts
from relaykit_server.state import services_of

RECEIVED = "Webhook received"


def _error(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=ErrorBody, description=description)


def request_url(scope: Scope, public_base: str | None) -> str:
    """The URL the provider called: ``public_base`` (``RELAYKIT_PUBLIC_URL``) followed by the
    path and query when set, else the URL as this server saw it. The path is the raw one
    received, so percent-encoding a signature covers is kept."""
    raw_path = scope.get("raw_path")
    # The ASGI raw_path has no query string, but some servers (Litestar's test client) add it.
    path = raw_path.partition(b"?")[0].decode("latin-1") if raw_path else scope["path"]
    query = scope.get("query_string", b"")
    tail = f"{path}?{query.decode('latin-1')}" if query else path
    if public_base is not None:
        return public_base + tail
    host = next((value for name, value in scope["headers"] if name == b"host"), None)
    if host is not None:
        authority = host.decode("latin-1")
    else:
        server = scope.get("server") or ("localhost", None)
        authority = server[0] if server[1] is None else f"{server[0]}:{server[1]}"
    return f"{scope.get('scheme', 'http')}://{authority}{tail}"


def request_headers(scope: Scope) -> dict[str, str]:
    """The headers by lower-case name; a repeated header's values joined by ``", "``."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


@post(
    "/webhooks/{integration_id:str}",
    status_code=200,
    summary="Receive a provider's webhook",
    description="The provider's signature, checked with the integration's own secret, is the "
    "authentication. Every event is stored once (a repeat answers 200 and changes nothing) "
    "and moves the delivery attempt it is about forward.",
    tags=["webhooks"],
    operation_id="receiveWebhook",
    responses={
        400: _error(
            "Not accepted: an unknown or deleted integration, no webhook secret configured, a "
            "bad or missing signature, a stale timestamp, a body the scheme does not expect "
            "(one answer for all, code `webhook_rejected`)."
        ),
        413: _error("The body is larger than RELAYKIT_MAX_BODY_BYTES (code `payload_too_large`)."),
        503: _error(
            "The events could not be recorded now, or the key provider cannot open the "
            "integration's secret now (code `webhook_unavailable`): the provider delivers "
            "again."
        ),
    },
)
async def receive_webhook(
    request: Request[Any, Any, Any],
    integration_id: FromPath[Annotated[str, Parameter(description="The integration's id.")]],
) -> WebhookReceived:
    intake = services_of(request.app).webhooks
    if is_id(integration_id):  # the request's log lines name it (the middleware restores)
        INTEGRATION_ID.set(integration_id)
    try:
        body = await request.body()
    except HTTPException as exc:
        if exc.status_code == 413:
            intake.rejected["body_too_large"] += 1
        raise
    scope = request.scope
    received = await intake.receive(
        integration_id,
        method=scope["method"],
        url=request_url(scope, intake.public_base),
        headers=request_headers(scope),
        body=body,
    )
    return WebhookReceived(
        message=RECEIVED,
        data=WebhookReceipt(received.events, received.applied, received.duplicates),
    )


class WebhookEventsController(Controller):
    path = "/webhook-events"
    tags = ["webhooks"]

    @get(
        "/",
        summary="List received webhook events, newest first",
        responses=responses(INVALID),
        operation_id="listWebhookEvents",
    )
    async def list_events(
        self,
        request: ApiRequest,
        integration_id: Annotated[
            str | None, Parameter(description="Only this integration's events.")
        ] = None,
        type: Annotated[
            str | None,
            Parameter(description="Only events of this type (`payment_intent.succeeded` …)."),
        ] = None,
        applied: Annotated[
            str | None,
            Parameter(
                description="Only events that moved a delivery attempt (`true`) or not.",
                schema_extra={"enum": ["true", "false"]},
            ),
        ] = None,
        page: Page = None,
        per_page: PerPage = None,
    ) -> WebhookEventPage:
        filters = {
            "integration_id": integration_id or None,
            "type": type or None,
            "applied": applied or None,
        }
        found = await services_of(request.app).webhooks.list(
            request.user.tenant_id,
            page=1 if page is None else page,
            per_page=DEFAULT_PER_PAGE if per_page is None else per_page,
            **filters,
        )
        meta, links = page_parts(request, found, "/api/v1/webhook-events", filters)
        items = msgspec.convert(found.items, list[WebhookEvent])
        return WebhookEventPage(data=items, meta=meta, links=links)

    @get(
        "/{event_id:str}",
        summary="Get a received webhook event",
        responses=responses(NOT_FOUND),
        operation_id="getWebhookEvent",
    )
    async def get_event(
        self,
        request: ApiRequest,
        event_id: FromPath[Annotated[str, Parameter(description="The event's id.")]],
    ) -> WebhookEventEnvelope:
        view = await services_of(request.app).webhooks.get(request.user.tenant_id, event_id)
        return WebhookEventEnvelope(data=msgspec.convert(view, WebhookEvent))


class IntegrationWebhookController(Controller):
    path = "/integrations"
    tags = ["webhooks"]

    @get(
        "/{integration_id:str}/webhook",
        summary="Where an integration receives webhooks",
        description="The URL to give the provider (Stripe: paste it into the dashboard's "
        "webhook endpoints; Twilio and Plivo sends carry it), null while RELAYKIT_PUBLIC_URL "
        "is unset.",
        responses=responses(NOT_FOUND, KEY_PROVIDER),
        operation_id="getIntegrationWebhook",
    )
    async def get_integration_webhook(
        self,
        request: ApiRequest,
        integration_id: FromPath[Annotated[str, Parameter(description="The integration's id.")]],
    ) -> IntegrationWebhookEnvelope:
        view = await services_of(request.app).webhooks.describe(
            request.user.tenant_id, integration_id
        )
        return IntegrationWebhookEnvelope(data=view)
