"""relaykit.client against a fake API (httpx.MockTransport): no server in this env.

The fake answers the contract's own examples (shared/spec/managing-integrations.md, and
docs/routing.md for routing rules, operations and attempts). Every test runs through both
``Client`` and ``AsyncClient``, behind one face (:class:`Api`) that awaits what is awaited
and collects what is iterated.
"""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from relaykit.capabilities import SendMessageInput
from relaykit.client import (
    UNSET,
    ApiError,
    AsyncClient,
    Client,
    Conflict,
    InvalidRequest,
    LedgerUnavailable,
    NotFound,
    OperationFailed,
    PayloadTooLarge,
    ServerError,
    Unauthenticated,
    UnexpectedResponse,
    _calls,
)
from relaykit.client._calls import backoff  # the real one: tests wait 0 s
from relaykit.wire import CredentialFieldInfo, Integration, Operation

pytestmark = pytest.mark.anyio

BASE = "http://relay.test"
TOKEN = "tok_test_1234"
IID = "01hwxyz123abc456def789ghi0"
RULE_ID = "01hwrule23abc456def789ghi0"
OP_ID = "01hwop0000abc456def789ghi0"
ATTEMPT_ID = "01hwat0000abc456def789ghi0"
EVENT_ID = "01hwev0000abc456def789ghi0"

# -- the contract's examples ----------------------------------------------------------------

PROVIDERS = {
    "success": True,
    "message": "Providers retrieved successfully",
    "data": [
        {
            "name": "stripe",
            "display_name": "Stripe",
            "category": "payment",
            "capabilities": ["initiate_payment", "process_refund", "verify_payment"],
            "credential_schema": {
                "publishable_key": {"type": "string", "sensitive": False, "required": True},
                "secret_key": {"type": "string", "sensitive": True, "required": True},
                "webhook_secret": {"type": "string", "sensitive": True, "required": False},
            },
            "is_configured": False,
        },
        {
            "name": "twilio",
            "display_name": "Twilio",
            "category": "communication",
            "capabilities": ["send_sms", "send_whatsapp"],
            "credential_schema": {
                "account_sid": {"type": "string", "sensitive": False, "required": True},
                "auth_token": {"type": "string", "sensitive": True, "required": True},
                "from_number": {"type": "string", "sensitive": False, "required": True},
            },
            "is_configured": True,
        },
    ],
    "meta": {},
}

INTEGRATION = {
    "id": IID,
    "provider": "stripe",
    "display_name": "Stripe",
    "category": "payment",
    "status": "active",
    "enabled_capabilities": ["initiate_payment", "process_refund", "verify_payment"],
    "credentials": {
        "publishable_key": "pk_test_placeholder",
        "secret_key": None,
        "webhook_secret": None,
    },
    "metadata": {"environment": "production", "account_label": "Primary Stripe Account"},
    "verified_at": "2026-01-10T08:45:00Z",
    "created_at": "2026-01-10T08:30:00Z",
    "updated_at": "2026-01-10T08:45:00Z",
}

INTEGRATION_PAGE = {
    "success": True,
    "data": [{**INTEGRATION, "metadata": {}}],
    "meta": {"current_page": 1, "per_page": 15, "total": 3, "last_page": 1},
    "links": {
        "first": "/api/v1/integrations?page=1",
        "last": "/api/v1/integrations?page=1",
        "prev": None,
        "next": None,
    },
}

CREATED = {
    "success": True,
    "message": "Integration configured successfully",
    "data": {**INTEGRATION, "status": "pending_verify", "verified_at": None},
    "meta": {},
}

RULE = {
    "id": RULE_ID,
    "capability": "initiate_payment",
    "integration_id": IID,
    "fallback_integration_id": None,
    "is_default": True,
    "priority": 100,
    "created_at": "2026-01-10T09:00:00Z",
    "updated_at": "2026-01-10T09:00:00Z",
}

ATTEMPT = {
    "id": ATTEMPT_ID,
    "operation_id": OP_ID,
    "integration_id": IID,
    "provider": "twilio",
    "capability": "send_sms",
    "status": "succeeded",
    "outcome": "succeeded",
    "provider_status_code": 201,
    "provider_code": None,
    "message": None,
    "duration_ms": 12,
    "started_at": "2026-01-10T09:05:00Z",
    "completed_at": "2026-01-10T09:05:01Z",
}

OPERATION = {
    "id": OP_ID,
    "capability": "send_sms",
    "status": "succeeded",
    "integration_id": IID,
    "idempotency_key": "otp-4711",
    "result": {
        "provider_message_id": "SM0001",
        "provider_status": "queued",
        "to": "+14155552345",
        "from": "+15550100000",
    },
    "error": None,
    "attempts": [ATTEMPT],
    "created_at": "2026-01-10T09:05:00Z",
    "completed_at": "2026-01-10T09:05:01Z",
}

WEBHOOK_EVENT = {
    "id": EVENT_ID,
    "integration_id": IID,
    "provider": "stripe",
    "dedupe_key": "evt_1NG8Du2eZvKYlo2CUI79vXWy",
    "type": "payment_intent.succeeded",
    "object_id": "pi_3MtwBwLkdIwHu7ix28a3tqPa",
    "status": "succeeded",
    "provider_code": None,
    "occurred_at": "2026-01-10T09:05:02Z",
    "received_at": "2026-01-10T09:05:03Z",
    "applied": True,
    "attempt_count": 1,
}

NO_ACTIVE_PROVIDER: dict[str, Any] = {
    "success": False,
    "message": "No active integration can serve send_sms: check the routing rules.",
    "code": "no_active_provider",
    "data": {
        **OPERATION,
        "status": "failed",
        "integration_id": None,
        "result": None,
        "error": {"code": "no_active_provider", "message": "No active integration …"},
        "attempts": [],
    },
}


def one(data: Any, message: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"success": True, "data": data, "meta": {}}
    if message is not None:
        body["message"] = message
    return body


def page_of(items: list[Any], path: str, number: int, last: int) -> dict[str, Any]:
    def link(n: int) -> str:
        return f"{path}?per_page=1&page={n}"

    return {
        "success": True,
        "data": items,
        "meta": {"current_page": number, "per_page": 1, "total": last, "last_page": last},
        "links": {
            "first": link(1),
            "last": link(last),
            "prev": link(number - 1) if number > 1 else None,
            "next": link(number + 1) if number < last else None,
        },
    }


# -- the fake API and one face for both clients ---------------------------------------------

Handler = Callable[[httpx.Request], httpx.Response]


class FakeApi:
    """Answers ``(method, path)`` with a canned status and body (or a handler), records
    every request; anything else is the contract's 404."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Handler] = {}
        self.requests: list[httpx.Request] = []

    def on(self, method: str, path: str, status: int, body: Any, **headers: str) -> None:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        kind = "text/html" if isinstance(body, bytes) else "application/json"
        self.routes[(method, path)] = lambda _: httpx.Response(
            status, content=content, headers={"content-type": kind, **headers}
        )

    def handle(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method, path)] = handler

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = self.routes.get((request.method, request.url.path))
        if route is None:
            return httpx.Response(
                404, json={"success": False, "message": "Not found.", "code": "not_found"}
            )
        return route(request)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


class Api:
    """Either client behind one face: a coroutine is awaited, an iterator collected."""

    def __init__(self, client: Client | AsyncClient) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            if inspect.isawaitable(result):
                return await result
            if isinstance(result, AsyncIterator):
                return [item async for item in result]
            if isinstance(result, Iterator):
                return list(result)
            return result

        return call


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fake() -> FakeApi:
    return FakeApi()


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Retries wait 0 s here; the list records the retry numbers the clients waited for."""
    waited: list[int] = []

    def backoff(retries_done: int) -> float:
        waited.append(retries_done)
        return 0.0

    monkeypatch.setattr(_calls, "backoff", backoff)
    return waited


@pytest.fixture(params=["Client", "AsyncClient"])
async def api(request: pytest.FixtureRequest, fake: FakeApi) -> AsyncIterator[Api]:
    if request.param == "Client":
        with Client(BASE, TOKEN, transport=httpx.MockTransport(fake)) as client:
            yield Api(client)
    else:
        async with AsyncClient(BASE, TOKEN, transport=httpx.MockTransport(fake)) as aclient:
            yield Api(aclient)


# -- decoding each response -----------------------------------------------------------------


async def test_list_providers_decodes_the_catalog_with_the_bearer_token(
    api: Api, fake: FakeApi
) -> None:
    fake.on("GET", "/api/v1/integrations/providers", 200, PROVIDERS)
    providers = await api.list_providers()
    assert [p.name for p in providers] == ["stripe", "twilio"]
    assert providers[0].credential_schema["secret_key"] == CredentialFieldInfo(
        type="string", sensitive=True, required=True
    )
    assert providers[1].is_configured is True
    assert fake.last.headers["authorization"] == f"Bearer {TOKEN}"
    assert fake.last.headers["accept"] == "application/json"
    assert fake.last.headers["user-agent"].startswith("relaykit-client/")


async def test_list_integrations_sends_only_the_filters_given(api: Api, fake: FakeApi) -> None:
    fake.on("GET", "/api/v1/integrations", 200, INTEGRATION_PAGE)
    page = await api.list_integrations(status="active", category=None, per_page=15)
    assert dict(fake.last.url.params) == {"status": "active", "per_page": "15"}
    assert page.meta.total == 3 and page.meta.per_page == 15 and page.links.next is None
    assert page.data[0].credentials == {
        "publishable_key": "pk_test_placeholder",
        "secret_key": None,
        "webhook_secret": None,
    }
    await api.list_integrations(page=2)
    assert dict(fake.last.url.params) == {"page": "2"}


async def test_the_integration_lifecycle_calls(api: Api, fake: FakeApi) -> None:
    path = f"/api/v1/integrations/{IID}"
    fake.on("POST", "/api/v1/integrations", 201, CREATED)
    fake.on("GET", path, 200, one(INTEGRATION))
    fake.on("PATCH", path, 200, one(INTEGRATION, "Integration updated successfully"))
    fake.on("POST", f"{path}/disable", 200, one({**INTEGRATION, "status": "inactive"}))
    fake.on("POST", f"{path}/activate", 200, one(INTEGRATION))
    fake.on("DELETE", path, 200, {"success": True, "message": "Integration deleted successfully"})
    credentials = {"publishable_key": "pk_test_placeholder", "secret_key": "sk_test_placeholder"}

    created = await api.create_integration("stripe", credentials, ["initiate_payment"])
    assert isinstance(created, Integration) and created.status == "pending_verify"
    assert fake.body() == {
        "provider": "stripe",
        "credentials": credentials,
        "enabled_capabilities": ["initiate_payment"],
    }  # metadata was not given, so it is not sent
    assert fake.last.headers["content-type"] == "application/json"
    await api.create_integration("stripe", credentials, [], metadata={"environment": "staging"})
    assert fake.body()["metadata"] == {"environment": "staging"}

    assert (await api.get_integration(IID)).verified_at == "2026-01-10T08:45:00Z"
    assert (await api.disable_integration(IID)).status == "inactive"
    assert (fake.last.method, fake.last.content) == ("POST", b"")
    assert (await api.activate_integration(IID)).status == "active"
    assert await api.delete_integration(IID) is None
    assert [(r.method, r.url.path) for r in fake.requests[2:]] == [
        ("GET", path),
        ("POST", f"{path}/disable"),
        ("POST", f"{path}/activate"),
        ("DELETE", path),
    ]


async def test_a_patch_sends_only_the_fields_given(api: Api, fake: FakeApi) -> None:
    fake.on("PATCH", f"/api/v1/integrations/{IID}", 200, one(INTEGRATION))
    fake.on("PATCH", f"/api/v1/routing-rules/{RULE_ID}", 200, one(RULE))
    await api.update_integration(IID, metadata={"rotated_at": "2026-03-01"})
    assert fake.body() == {"metadata": {"rotated_at": "2026-03-01"}}
    await api.update_integration(IID, credentials={"secret_key": "sk_new"}, metadata=UNSET)
    assert fake.body() == {"credentials": {"secret_key": "sk_new"}}
    await api.update_integration(IID, metadata=None)  # null clears: it is sent
    assert fake.body() == {"metadata": None}
    await api.update_routing_rule(RULE_ID, priority=5)
    assert fake.body() == {"priority": 5}
    await api.update_routing_rule(RULE_ID, integration_id="01b", fallback_integration_id=None)
    assert fake.body() == {"integration_id": "01b", "fallback_integration_id": None}
    assert fake.last.method == "PATCH"


async def test_routing_rules(api: Api, fake: FakeApi) -> None:
    fake.on("POST", "/api/v1/routing-rules", 201, one(RULE, "Routing rule created successfully"))
    fake.on("GET", f"/api/v1/routing-rules/{RULE_ID}", 200, one(RULE))
    fake.on("GET", "/api/v1/routing-rules", 200, page_of([RULE], "/api/v1/routing-rules", 1, 1))
    fake.on("DELETE", f"/api/v1/routing-rules/{RULE_ID}", 200, {"success": True, "message": "ok"})
    made = await api.create_routing_rule("initiate_payment", IID, is_default=True, priority=100)
    assert made.is_default and made.priority == 100 and made.fallback_integration_id is None
    assert fake.body() == {
        "capability": "initiate_payment",
        "integration_id": IID,
        "is_default": True,
        "priority": 100,
    }
    assert (await api.get_routing_rule(RULE_ID)).id == RULE_ID
    listed = await api.list_routing_rules(capability="initiate_payment")
    assert [r.id for r in listed.data] == [RULE_ID]
    assert dict(fake.last.url.params) == {"capability": "initiate_payment"}
    assert await api.delete_routing_rule(RULE_ID) is None


async def test_run_operation_sends_the_input_and_the_idempotency_key(
    api: Api, fake: FakeApi
) -> None:
    fake.on("POST", "/api/v1/operations/send_sms", 201, one(OPERATION, "Operation completed"))
    message = SendMessageInput(to="+14155552345", body="Your code is 123456")
    operation = await api.run_operation("send_sms", message, idempotency_key="otp-4711")
    assert isinstance(operation, Operation)
    assert operation.status == "succeeded" and operation.result["provider_message_id"] == "SM0001"
    assert operation.attempts[0].provider_status_code == 201
    assert fake.last.headers["idempotency-key"] == "otp-4711"
    assert fake.body() == {"to": "+14155552345", "body": "Your code is 123456", "from": None}
    await api.run_operation("send_sms", {"to": "+14155552345", "body": "hi"})
    assert "idempotency-key" not in fake.last.headers
    assert fake.body() == {"to": "+14155552345", "body": "hi"}


async def test_the_ledger_and_delivery_attempts(api: Api, fake: FakeApi) -> None:
    fake.on("GET", f"/api/v1/operations/{OP_ID}", 200, one(OPERATION))
    fake.on("GET", "/api/v1/operations", 200, page_of([OPERATION], "/api/v1/operations", 1, 1))
    fake.on("GET", f"/api/v1/delivery-attempts/{ATTEMPT_ID}", 200, one(ATTEMPT))
    attempts = page_of([ATTEMPT], "/api/v1/delivery-attempts", 1, 1)
    fake.on("GET", "/api/v1/delivery-attempts", 200, attempts)
    assert (await api.get_operation(OP_ID)).idempotency_key == "otp-4711"
    found = await api.list_operations(idempotency_key="otp-4711", status="succeeded")
    assert [o.id for o in found.data] == [OP_ID]
    assert dict(fake.last.url.params) == {"idempotency_key": "otp-4711", "status": "succeeded"}
    assert (await api.get_delivery_attempt(ATTEMPT_ID)).outcome == "succeeded"
    listed = await api.list_delivery_attempts(operation_id=OP_ID, per_page=1)
    assert listed.data[0].operation_id == OP_ID
    assert dict(fake.last.url.params) == {"operation_id": OP_ID, "per_page": "1"}


async def test_webhook_events_and_where_an_integration_receives(api: Api, fake: FakeApi) -> None:
    fake.on("GET", f"/api/v1/webhook-events/{EVENT_ID}", 200, one(WEBHOOK_EVENT))
    events = page_of([WEBHOOK_EVENT], "/api/v1/webhook-events", 1, 1)
    fake.on("GET", "/api/v1/webhook-events", 200, events)
    where = {
        "url": f"https://relay.example.com/webhooks/{IID}",
        "path": f"/webhooks/{IID}",
        "receives_webhooks": True,
        "secret_configured": False,
    }
    fake.on("GET", f"/api/v1/integrations/{IID}/webhook", 200, one(where))

    event = await api.get_webhook_event(EVENT_ID)
    assert (event.type, event.object_id, event.applied) == (
        "payment_intent.succeeded",
        WEBHOOK_EVENT["object_id"],
        True,
    )
    listed = await api.list_webhook_events(applied=False, type="charge.refunded", page=2)
    assert listed.data[0].dedupe_key == WEBHOOK_EVENT["dedupe_key"]
    assert dict(fake.last.url.params) == {
        "applied": "false",
        "type": "charge.refunded",
        "page": "2",
    }
    webhook = await api.get_integration_webhook(IID)
    assert webhook.url == where["url"] and webhook.secret_configured is False
    with pytest.raises(TypeError, match="'status'"):
        await api.list_webhook_events(status="succeeded")


async def test_an_attempt_shows_its_delivery_status_and_an_older_server_none(
    api: Api, fake: FakeApi
) -> None:
    tracked = {
        **ATTEMPT,
        "provider_object_id": "SM0001",
        "delivery_status": "delivered",
        "delivery_updated_at": "2026-01-10T09:05:09Z",
    }
    fake.on("GET", f"/api/v1/delivery-attempts/{ATTEMPT_ID}", 200, one(tracked))
    attempt = await api.get_delivery_attempt(ATTEMPT_ID)
    assert (attempt.provider_object_id, attempt.delivery_status) == ("SM0001", "delivered")
    fake.on("GET", f"/api/v1/delivery-attempts/{ATTEMPT_ID}", 200, one(ATTEMPT))
    assert (await api.get_delivery_attempt(ATTEMPT_ID)).delivery_status is None


# -- paging ---------------------------------------------------------------------------------

COLLECTIONS = [
    ("iter_integrations", "/api/v1/integrations", INTEGRATION, {"status": "active"}),
    ("iter_routing_rules", "/api/v1/routing-rules", RULE, {"capability": "send_sms"}),
    ("iter_operations", "/api/v1/operations", OPERATION, {"capability": "send_sms"}),
    ("iter_delivery_attempts", "/api/v1/delivery-attempts", ATTEMPT, {"operation_id": OP_ID}),
    ("iter_webhook_events", "/api/v1/webhook-events", WEBHOOK_EVENT, {"type": "charge.refunded"}),
]


@pytest.mark.parametrize(("method", "path", "item", "filters"), COLLECTIONS)
async def test_an_iterator_follows_links_next_across_three_pages_and_stops(
    api: Api, fake: FakeApi, method: str, path: str, item: dict[str, Any], filters: dict[str, str]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        number = int(request.url.params.get("page", "1"))
        return httpx.Response(
            200, json=page_of([{**item, "id": f"item-{number}"}], path, number, 3)
        )

    fake.handle("GET", path, handler)
    items = await getattr(api, method)(per_page=1, **filters)
    assert [i.id for i in items] == ["item-1", "item-2", "item-3"]
    first, *followed = fake.requests
    assert first.url.path == path and dict(first.url.params) == {**filters, "per_page": "1"}
    assert [str(r.url) for r in followed] == [  # links.next, exactly as the server gave it
        f"{BASE}{path}?per_page=1&page=2",
        f"{BASE}{path}?per_page=1&page=3",
    ]


async def test_keyword_arguments_are_checked_like_plain_ones(api: Api, fake: FakeApi) -> None:
    with pytest.raises(TypeError, match="'stauts'"):
        await api.list_integrations(stauts="active")
    with pytest.raises(TypeError, match="'page'"):
        await api.iter_integrations(page=2)  # an iteration starts at the first page
    with pytest.raises(TypeError):
        await api.update_routing_rule(RULE_ID, priorty=5)
    assert fake.requests == []


async def test_an_id_is_one_path_segment(api: Api, fake: FakeApi) -> None:
    with pytest.raises(NotFound):
        await api.get_integration("../integrations/providers")
    assert fake.last.url.raw_path == b"/api/v1/integrations/..%2Fintegrations%2Fproviders"


async def test_a_base_url_with_a_path_prefix_is_kept(fake: FakeApi) -> None:
    fake.on("GET", "/relay/api/v1/integrations/providers", 200, PROVIDERS)
    with Client(f"{BASE}/relay", TOKEN, transport=httpx.MockTransport(fake)) as client:
        assert len(client.list_providers()) == 2


# -- errors ---------------------------------------------------------------------------------

VALIDATION = {
    "success": False,
    "message": "The given data was invalid.",
    "errors": {
        "credentials.secret_key": ["The secret_key field is required."],
        "provider": ["An integration for this provider already exists."],
    },
}


def failure(message: str, code: str, **extra: Any) -> dict[str, Any]:
    return {"success": False, "message": message, "code": code, **extra}


ERRORS = [
    (401, failure("Unauthenticated.", "unauthenticated"), Unauthenticated, "unauthenticated"),
    (404, failure("Not found.", "not_found"), NotFound, "not_found"),
    (409, failure("Cannot activate: it is pending_verify.", "invalid_transition"), Conflict, None),
    (413, failure("The request body is too large.", "payload_too_large"), PayloadTooLarge, None),
    (422, VALIDATION, InvalidRequest, None),
    (400, failure("The request body is not valid JSON.", "malformed_json"), ApiError, None),
    (500, failure("Server error.", "server_error"), ServerError, None),
    (502, failure("Server error.", "server_error"), ServerError, None),
    (503, failure("Server error.", "server_error"), ServerError, None),
]


@pytest.mark.parametrize(("status", "body", "cls", "_"), ERRORS)
async def test_each_status_raises_its_error(
    api: Api, fake: FakeApi, status: int, body: dict[str, Any], cls: type[ApiError], _: object
) -> None:
    fake.on("GET", f"/api/v1/integrations/{IID}", status, body, **{"x-request-id": "req-1"})
    with pytest.raises(ApiError) as caught:
        await api.get_integration(IID)
    error = caught.value
    assert type(error) is cls
    assert error.status_code == status and error.message == body["message"]
    assert error.code == body.get("code") and error.body == body and error.request_id == "req-1"
    assert error.errors == body.get("errors", {})
    assert body["message"] in str(error) and str(status) in str(error)


async def test_a_422_keeps_every_problem_keyed_by_field(api: Api, fake: FakeApi) -> None:
    canary = "sk_test_CANARY_client_9f1c"
    fake.on("POST", "/api/v1/integrations", 422, VALIDATION)
    with pytest.raises(InvalidRequest) as caught:
        await api.create_integration("stripe", {"secret_key": canary}, ["initiate_payment"])
    assert caught.value.errors["credentials.secret_key"] == ["The secret_key field is required."]
    assert "credentials.secret_key: The secret_key field is required." in str(caught.value)
    assert canary not in str(caught.value) and canary not in repr(caught.value.args)


async def test_a_body_that_is_not_the_envelope_still_gives_the_status_error(
    api: Api, fake: FakeApi
) -> None:
    html = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    fake.on("GET", "/api/v1/integrations/providers", 502, html)
    with pytest.raises(ServerError) as caught:
        await api.list_providers()
    assert caught.value.status_code == 502 and caught.value.code is None
    assert "not relaykit's JSON envelope" in caught.value.message
    assert "text/html" in caught.value.message
    assert caught.value.body == html.decode()
    fake.on("GET", f"/api/v1/integrations/{IID}", 404, {"detail": "Not Found"})  # not ours
    with pytest.raises(NotFound, match="not relaykit's JSON envelope"):
        await api.get_integration(IID)


async def test_a_success_that_does_not_decode_is_an_unexpected_response(
    api: Api, fake: FakeApi
) -> None:
    # The contract shows a PATCH's data abridged; relaykit.wire (and the server) send the
    # whole integration, and a body without it is a disagreement worth an error.
    abridged = {"id": IID, "status": "inactive", "updated_at": "2026-02-15T11:00:00Z"}
    fake.on("POST", f"/api/v1/integrations/{IID}/disable", 200, one(abridged))
    with pytest.raises(UnexpectedResponse) as caught:
        await api.disable_integration(IID)
    assert caught.value.status_code == 200
    assert "IntegrationEnvelope" in caught.value.message and "$.data" in caught.value.message


@pytest.mark.parametrize(
    ("status", "code"),
    [(409, "no_active_provider"), (422, "provider_rejected"), (502, "provider_unavailable")],
)
async def test_a_failed_operation_carries_the_operation(
    api: Api, fake: FakeApi, status: int, code: str
) -> None:
    body = copy.deepcopy(NO_ACTIVE_PROVIDER)
    body["code"] = body["data"]["error"]["code"] = code
    fake.on("POST", "/api/v1/operations/send_sms", status, body)
    with pytest.raises(OperationFailed) as caught:
        await api.run_operation("send_sms", {"to": "+14155552345", "body": "hi"})
    failed = caught.value
    assert failed.status_code == status and failed.code == code
    assert isinstance(failed.operation, Operation)
    assert failed.operation.status == "failed" and failed.operation.error is not None
    assert failed.operation.error.code == code and failed.operation.attempts == []


async def test_operation_failures_without_an_operation_keep_their_status_class(
    api: Api, fake: FakeApi
) -> None:
    path = "/api/v1/operations/send_sms"
    fake.on("POST", path, 422, {**VALIDATION, "errors": {"to": ["Not E.164."]}})
    with pytest.raises(InvalidRequest) as invalid:
        await api.run_operation("send_sms", {"to": "5", "body": "hi"})
    assert invalid.value.errors == {"to": ["Not E.164."]}
    fake.on("POST", path, 409, failure("The key is in use.", "idempotency_conflict"))
    with pytest.raises(Conflict) as conflict:
        await api.run_operation("send_sms", {"to": "+14155552345", "body": "hi"})
    assert conflict.value.code == "idempotency_conflict"
    fake.on(
        "POST", path, 503, failure("The ledger failed.", "ledger_unavailable", data={"id": OP_ID})
    )
    with pytest.raises(LedgerUnavailable) as ledger:
        await api.run_operation("send_sms", {"to": "+14155552345", "body": "hi"})
    assert ledger.value.operation_id == OP_ID and isinstance(ledger.value, ServerError)
    fake.on("POST", path, 503, failure("The ledger failed.", "ledger_unavailable"))
    with pytest.raises(LedgerUnavailable) as nothing_recorded:
        await api.run_operation("send_sms", {"to": "+14155552345", "body": "hi"})
    assert nothing_recorded.value.operation_id is None


async def test_an_error_body_that_breaks_its_struct_keeps_status_and_code(
    api: Api, fake: FakeApi
) -> None:
    body = {**NO_ACTIVE_PROVIDER, "data": {"status": "failed"}}  # no id, no attempts
    fake.on("POST", "/api/v1/operations/send_sms", 409, body)
    with pytest.raises(Conflict) as caught:
        await api.run_operation("send_sms", {"to": "+14155552345", "body": "hi"})
    assert caught.value.code == "no_active_provider"
    assert "does not match the contract" in caught.value.message


# -- retries --------------------------------------------------------------------------------


def failing(
    fake: FakeApi, times: int, error: type[httpx.TransportError], answer: Handler
) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        fake.requests.append(request)
        if len(fake.requests) <= times:
            raise error("connection refused", request=request)
        return answer(request)

    return handler


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., Api]]:
    """Clients over a given handler, of the kind asked, closed at the end."""
    made: list[Client | AsyncClient] = []

    def make(kind: str, handler: Handler, **options: Any) -> Api:
        transport = httpx.MockTransport(handler)
        cls = Client if kind == "Client" else AsyncClient
        made.append(cls(BASE, TOKEN, transport=transport, **options))
        return Api(made[-1])

    yield make
    for client in made:
        if isinstance(client, Client):
            client.close()
        else:
            await client.aclose()


both = pytest.mark.parametrize("kind", ["Client", "AsyncClient"])


def providers_answer(_: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=PROVIDERS)


@both
@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ConnectTimeout])
async def test_a_get_is_retried_after_a_failed_connection(
    kind: str,
    error: type[httpx.TransportError],
    fake: FakeApi,
    no_waiting: list[int],
    make: Callable[..., Api],
) -> None:
    api = make(kind, failing(fake, 2, error, providers_answer))
    assert len(await api.list_providers()) == 2
    assert len(fake.requests) == 3 and no_waiting == [0, 1]


@both
async def test_retries_stop_after_retries_and_raise_the_transport_error(
    kind: str, fake: FakeApi, no_waiting: list[int], make: Callable[..., Api]
) -> None:
    api = make(kind, failing(fake, 99, httpx.ConnectError, providers_answer), retries=3)
    with pytest.raises(httpx.ConnectError):
        await api.list_providers()
    assert len(fake.requests) == 4 and no_waiting == [0, 1, 2]


WRITES = [
    ("create_integration", ("stripe", {"secret_key": "sk"}, ["initiate_payment"]), {}),
    ("update_integration", (IID,), {"metadata": {}}),
    ("delete_integration", (IID,), {}),
    ("disable_integration", (IID,), {}),
    ("run_operation", ("send_sms", {"to": "+14155552345", "body": "hi"}), {"idempotency_key": "k"}),
    ("delete_routing_rule", (RULE_ID,), {}),
]


@both
@pytest.mark.parametrize(("method", "args", "kwargs"), WRITES)
async def test_a_write_is_never_retried(
    kind: str,
    method: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    fake: FakeApi,
    no_waiting: list[int],
    make: Callable[..., Api],
) -> None:
    api = make(kind, failing(fake, 1, httpx.ConnectError, providers_answer))
    with pytest.raises(httpx.ConnectError):
        await getattr(api, method)(*args, **kwargs)
    assert len(fake.requests) == 1 and fake.last.method != "GET" and no_waiting == []


@both
async def test_a_read_timeout_is_not_retried(
    kind: str, fake: FakeApi, make: Callable[..., Api]
) -> None:
    api = make(kind, failing(fake, 1, httpx.ReadTimeout, providers_answer))
    with pytest.raises(httpx.ReadTimeout):
        await api.list_providers()
    assert len(fake.requests) == 1


async def test_a_503_is_not_retried(api: Api, fake: FakeApi, no_waiting: list[int]) -> None:
    fake.on("GET", "/api/v1/integrations/providers", 503, failure("Server error.", "server_error"))
    with pytest.raises(ServerError):
        await api.list_providers()
    assert len(fake.requests) == 1 and no_waiting == []


def test_the_backoff_doubles_from_a_tenth_of_a_second_up_to_two() -> None:
    assert [backoff(n) for n in range(7)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]


# -- the clients' own lifecycle ------------------------------------------------------------


async def test_the_clients_close_their_connections(fake: FakeApi) -> None:
    with Client(BASE, TOKEN, transport=httpx.MockTransport(fake)) as client:
        pass
    assert client._http.is_closed
    async with AsyncClient(BASE, TOKEN, transport=httpx.MockTransport(fake)) as aclient:
        pass
    assert aclient._http.is_closed


async def test_extra_headers_go_on_every_request_but_never_replace_the_token(
    fake: FakeApi,
) -> None:
    fake.on("GET", "/api/v1/integrations/providers", 200, PROVIDERS)
    headers = {"X-Trace": "t-1", "Authorization": "Bearer other"}
    with Client(BASE, TOKEN, transport=httpx.MockTransport(fake), headers=headers) as client:
        client.list_providers()
    assert fake.last.headers["x-trace"] == "t-1"
    assert fake.last.headers["authorization"] == f"Bearer {TOKEN}"
