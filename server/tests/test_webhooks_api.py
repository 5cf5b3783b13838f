"""Inbound webhooks over HTTP: POST /webhooks/{integration_id} (signed with the integration's
own secret, stored once, applied forward only), GET /api/v1/webhook-events, GET
/api/v1/integrations/{id}/webhook, and the delivery status on attempts and operations.

The test providers' scheme (conftest ``_test_scheme``) signs ``t.url.body`` for messaging and
``t.body`` for payments with HMAC-SHA256, as the real schemes do in their own ways.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from relaykit.plugins import RelaykitPluginManager
from relaykit.settings import Settings
from relaykit.storage.database import open_database
from relaykit.storage.models import integrations
from relaykit_server import create_app

from .conftest import ON_SEND, SENT, Api, webhook_headers
from .test_routing_api import ATTEMPTS, MESSAGE, SMS, messaging, rule

pytestmark = pytest.mark.anyio

EVENTS = "/api/v1/webhook-events"
SEEN_URL = "http://testserver.local"  # the URL the test client calls the server at
CANARY = "tok-ok-canary-5b1f0e7d2c"
REJECTED = {"success": False, "message": "The webhook was rejected.", "code": "webhook_rejected"}


@pytest.fixture(autouse=True)
def clear_hooks() -> Iterator[None]:
    SENT.clear()
    ON_SEND.clear()
    yield
    ON_SEND.clear()


def event(event_id: str, status: str | None = "delivered", obj: str | None = None) -> bytes:
    body: dict[str, Any] = {"id": event_id, "type": f"message.{status}", "status": status}
    if obj is not None:
        body["object"] = obj
    return msgspec.json.encode(body)


async def deliver(
    api: Api,
    integration_id: str,
    body: bytes,
    *,
    secret: str = CANARY,
    url: str | None = None,
    signs_url: bool = True,
    **kwargs: Any,
) -> Any:
    path = f"/webhooks/{integration_id}"
    signed_url = (url or SEEN_URL + path) if signs_url else None
    headers = webhook_headers(secret, body, url=signed_url, **kwargs)
    return await api.client.post(path, content=body, headers=headers)


async def sent_sms(api: Api, headers: dict[str, str], token: str = CANARY) -> tuple[str, str]:
    """An active messaging integration, routed to, and one SMS sent: (integration, message)."""
    integration_id = await messaging(api, headers, "textly", token)
    await rule(api, headers, integration_id=integration_id, is_default=True)
    operation = (await api.client.post(SMS, json=MESSAGE, headers=headers)).json()["data"]
    [attempt] = operation["attempts"]
    assert attempt["provider_object_id"] == f"msg-{operation['id']}"
    assert attempt["delivery_status"] == "accepted"
    return integration_id, attempt["provider_object_id"]


async def attempt_of(api: Api, headers: dict[str, str], message_id: str) -> dict[str, Any]:
    listed = (await api.client.get(ATTEMPTS, headers=headers)).json()["data"]
    [found] = [a for a in listed if a["provider_object_id"] == message_id]
    return found  # type: ignore[no-any-return]


async def events_of(api: Api, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    response = await api.client.get(EVENTS, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


# -- accepted and applied -------------------------------------------------------------------


async def test_a_signed_status_callback_moves_the_attempt_and_shows_on_the_operation(
    api: Api,
) -> None:
    _, headers = api.tenant_token("acme")
    integration_id, message_id = await sent_sms(api, headers)

    response = await deliver(api, integration_id, event("ev-1", "delivered", message_id))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "success": True,
        "message": "Webhook received",
        "data": {"events": 1, "applied": 1, "duplicates": 0},
        "meta": {},
    }
    attempt = await attempt_of(api, headers, message_id)
    assert attempt["delivery_status"] == "delivered"
    assert attempt["delivery_updated_at"] is not None
    operation = (
        await api.client.get(f"/api/v1/operations/{attempt['operation_id']}", headers=headers)
    ).json()["data"]
    assert operation["attempts"][0]["delivery_status"] == "delivered"
    [stored] = await events_of(api, headers)
    assert stored["dedupe_key"] == "ev-1" and stored["object_id"] == message_id
    assert (stored["applied"], stored["attempt_count"], stored["status"]) == (True, 1, "delivered")
    assert stored["integration_id"] == integration_id and stored["provider"] == "textly"


async def test_status_moves_only_forward_and_a_repeat_changes_nothing(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    integration_id, message_id = await sent_sms(api, headers)
    await deliver(api, integration_id, event("ev-delivered", "delivered", message_id))

    late = await deliver(api, integration_id, event("ev-sent", "sent", message_id))
    assert late.status_code == 200 and late.json()["data"] == {
        "events": 1,
        "applied": 0,
        "duplicates": 0,
    }
    repeat = await deliver(api, integration_id, event("ev-delivered", "delivered", message_id))
    assert repeat.status_code == 200
    assert repeat.json()["data"] == {"events": 1, "applied": 0, "duplicates": 1}
    assert (await attempt_of(api, headers, message_id))["delivery_status"] == "delivered"
    failed = await deliver(api, integration_id, event("ev-failed", "failed", message_id))
    assert failed.json()["data"]["applied"] == 0  # a failure after delivery changes nothing
    assert (await attempt_of(api, headers, message_id))["delivery_status"] == "delivered"
    stored = {e["dedupe_key"]: e["applied"] for e in await events_of(api, headers)}
    assert stored == {"ev-delivered": True, "ev-sent": False, "ev-failed": False}


async def test_an_event_about_something_never_sent_is_stored_not_applied(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    integration_id, message_id = await sent_sms(api, headers)
    response = await deliver(api, integration_id, event("ev-x", "delivered", "msg-elsewhere"))
    assert response.status_code == 200 and response.json()["data"]["applied"] == 0
    no_object = await deliver(api, integration_id, event("ev-y", None))
    assert no_object.status_code == 200
    assert [(e["dedupe_key"], e["applied"]) for e in await events_of(api, headers)] == [
        ("ev-y", False),
        ("ev-x", False),
    ]
    assert (await attempt_of(api, headers, message_id))["delivery_status"] == "accepted"


async def test_a_callback_arriving_before_the_send_is_recorded_is_applied_when_it_is(
    api: Api,
) -> None:
    _, headers = api.tenant_token("acme")
    integration_id = await messaging(api, headers, "textly", CANARY)
    await rule(api, headers, integration_id=integration_id, is_default=True)
    early: list[Any] = []

    async def call_back_first(message_id: str) -> None:
        # Straight to the receiver's service: the test client cannot nest a request.
        body = event("ev-early", "delivered", message_id)
        url = f"{SEEN_URL}/webhooks/{integration_id}"
        headers = {k.lower(): v for k, v in webhook_headers(CANARY, body, url=url).items()}
        received = await api.services.webhooks.receive(
            integration_id, method="POST", url=url, headers=headers, body=body
        )
        early.append(received)

    ON_SEND.append(call_back_first)
    operation = (await api.client.post(SMS, json=MESSAGE, headers=headers)).json()["data"]
    [received] = early
    assert (received.events, received.applied) == (1, 0)
    message_id = operation["attempts"][0]["provider_object_id"]
    assert (await attempt_of(api, headers, message_id))["delivery_status"] == "delivered"
    [stored] = await events_of(api, headers)
    assert (stored["applied"], stored["attempt_count"]) == (True, 1)


async def test_fifty_concurrent_copies_of_one_event_are_applied_once(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    integration_id, message_id = await sent_sms(api, headers)
    body = event("ev-burst", "delivered", message_id)
    answers: list[Any] = []

    async def one() -> None:
        answers.append(await deliver(api, integration_id, body))

    async with anyio.create_task_group() as group:
        for _ in range(50):
            group.start_soon(one)
    assert [a.status_code for a in answers] == [200] * 50
    receipts = [a.json()["data"] for a in answers]
    assert sum(r["applied"] for r in receipts) == 1
    assert sum(r["duplicates"] for r in receipts) == 49
    [stored] = await events_of(api, headers)
    assert stored["attempt_count"] == 1
    assert (await attempt_of(api, headers, message_id))["delivery_status"] == "delivered"


async def test_a_payment_event_signed_with_the_webhook_secret_is_applied(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    created = await api.client.post(
        "/api/v1/integrations",
        json={
            "provider": "paymo",
            "credentials": {
                "publishable_key": "pk_1",
                "secret_key": "sk_canary_1",
                "webhook_secret": "whsec_canary_1",
            },
            "enabled_capabilities": ["initiate_payment"],
        },
        headers=headers,
    )
    integration_id = created.json()["data"]["id"]
    api.database.transaction_blocking(
        lambda conn: conn.execute(
            integrations.update().where(integrations.c.id == integration_id).values(status="active")
        )
    )
    await api.client.post(
        "/api/v1/routing-rules",
        json={"capability": "initiate_payment", "integration_id": integration_id},
        headers=headers,
    )
    paid = await api.client.post(
        "/api/v1/operations/initiate_payment",
        json={"amount": 500, "currency": "usd"},
        headers={**headers, "Idempotency-Key": "pay-1"},
    )
    assert paid.status_code == 201, paid.text
    payment_id = paid.json()["data"]["result"]["provider_payment_id"]
    body = msgspec.json.encode(
        {"id": "evt_1", "type": "payment_intent.succeeded", "object": payment_id,
         "status": "succeeded"}
    )  # fmt: skip
    wrong = await deliver(api, integration_id, body, secret="sk_canary_1", signs_url=False)
    assert wrong.status_code == 400
    response = await deliver(api, integration_id, body, secret="whsec_canary_1", signs_url=False)
    assert response.status_code == 200 and response.json()["data"]["applied"] == 1
    attempt = paid.json()["data"]["attempts"][0]
    shown = (await api.client.get(f"{ATTEMPTS}/{attempt['id']}", headers=headers)).json()
    assert shown["data"]["provider_object_id"] == payment_id
    assert shown["data"]["delivery_status"] == "succeeded"


# -- rejected ---------------------------------------------------------------------------------


async def test_one_tenants_signed_event_to_another_tenants_integration_is_rejected(
    api: Api,
) -> None:
    _, acme = api.tenant_token("acme")
    _, other = api.tenant_token("other")
    acme_id, message_id = await sent_sms(api, acme, token="tok-ok-acme")
    other_id = await messaging(api, other, "textly", "tok-ok-other")
    body = event("ev-cross", "delivered", message_id)
    # Signed correctly for the other tenant's integration (its secret, its URL) ...
    own_url = f"{SEEN_URL}/webhooks/{other_id}"
    assert (await deliver(api, other_id, body, secret="tok-ok-other", url=own_url)).is_success
    # ... and replayed to acme's URL, or re-signed for it with the other tenant's secret.
    replayed = webhook_headers("tok-ok-other", body, url=own_url)
    moved = await api.client.post(f"/webhooks/{acme_id}", content=body, headers=replayed)
    resigned = await deliver(api, acme_id, body, secret="tok-ok-other")
    for response in (moved, resigned):
        assert (response.status_code, response.json()) == (400, REJECTED)
    assert (await attempt_of(api, acme, message_id))["delivery_status"] == "accepted"
    assert await events_of(api, acme) == []


async def test_an_unknown_id_and_a_bad_signature_answer_byte_for_byte_alike(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    integration_id, message_id = await sent_sms(api, headers)
    body = event("ev-1", "delivered", message_id)
    unknown = await deliver(api, "01" + "a" * 24, body)
    not_an_id = await deliver(api, "nope", body)
    bad = await deliver(api, integration_id, body, secret="tok-ok-guess")
    flipped = bytearray(body)
    flipped[3] ^= 1
    headers_for_body = webhook_headers(CANARY, body, url=f"{SEEN_URL}/webhooks/{integration_id}")
    tampered = await api.client.post(
        f"/webhooks/{integration_id}", content=bytes(flipped), headers=headers_for_body
    )
    unsigned = await api.client.post(f"/webhooks/{integration_id}", content=body)
    stale = await deliver(api, integration_id, body, timestamp=int(time.time()) - 3600)
    answers = [unknown, not_an_id, bad, tampered, unsigned, stale]
    assert {a.status_code for a in answers} == {400}
    assert {a.content for a in answers} == {unknown.content}
    assert unknown.json() == REJECTED
    # alike but for each request's own id (X-Request-ID)
    same = [sorted((k, v) for k, v in a.headers.items() if k != "x-request-id") for a in answers]
    assert len({tuple(headers) for headers in same}) == 1
    rejected = api.services.webhooks.rejected
    assert rejected["unknown_integration"] == 2 and rejected["signature"] == 4
    assert await events_of(api, headers) == []


async def test_a_deleted_integration_receives_nothing(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    integration_id, message_id = await sent_sms(api, headers)
    deleted = await api.client.delete(f"/api/v1/integrations/{integration_id}", headers=headers)
    assert deleted.status_code == 200
    response = await deliver(api, integration_id, event("ev-1", "delivered", message_id))
    assert (response.status_code, response.json()) == (400, REJECTED)
    assert api.services.webhooks.rejected["unknown_integration"] == 1


async def test_a_provider_without_its_secret_configured_is_rejected(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    created = await api.client.post(
        "/api/v1/integrations",
        json={
            "provider": "paymo",
            "credentials": {"publishable_key": "pk_1", "secret_key": "sk_canary_2"},
            "enabled_capabilities": ["initiate_payment"],
        },
        headers=headers,
    )
    integration_id = created.json()["data"]["id"]
    body = msgspec.json.encode({"id": "evt_1", "type": "payment_intent.succeeded"})
    response = await deliver(api, integration_id, body, secret="", signs_url=False)
    assert (response.status_code, response.json()) == (400, REJECTED)
    assert api.services.webhooks.rejected["secret_not_configured"] == 1


async def test_a_body_the_scheme_does_not_expect_and_a_failing_plugin_are_400(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    integration_id, _ = await sent_sms(api, headers)
    not_json = await deliver(api, integration_id, b"MessageSid=SM1&MessageStatus=sent")
    not_an_event = await deliver(api, integration_id, b"[1, 2]")
    boom = await deliver(api, integration_id, b'{"boom": true}')
    nul = await deliver(api, integration_id, msgspec.json.encode({"id": "ev\x00", "type": "x"}))
    too_long = await deliver(api, integration_id, msgspec.json.encode({"id": "e" * 300}))
    for response in (not_json, not_an_event, boom, nul, too_long):
        assert (response.status_code, response.json()) == (400, REJECTED)
    rejected = api.services.webhooks.rejected
    assert rejected["signature"] == 2
    assert rejected["plugin_error"] == 1 and rejected["invalid_event"] == 2
    assert await events_of(api, headers) == []


async def test_a_body_over_the_limit_is_413(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    integration_id, _ = await sent_sms(api, headers)
    body = b'{"id": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = await deliver(api, integration_id, body)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert api.services.webhooks.rejected["body_too_large"] == 1


async def test_a_database_failure_is_a_503_and_nothing_is_half_applied(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    integration_id, message_id = await sent_sms(api, headers)
    # The failure strikes after the event was inserted and the attempt moved (marking the
    # event applied updates it): the transaction must roll back both.
    if api.database.dialect == "sqlite":
        statements = [
            "CREATE TRIGGER inject BEFORE UPDATE ON webhook_events"
            " BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        ]
        undo = ["DROP TRIGGER inject"]
    else:
        statements = [
            "CREATE FUNCTION inject() RETURNS trigger AS $$"
            " BEGIN RAISE EXCEPTION 'injected failure'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER inject BEFORE UPDATE ON webhook_events FOR EACH ROW"
            " EXECUTE FUNCTION inject()",
        ]
        undo = ["DROP TRIGGER inject ON webhook_events", "DROP FUNCTION inject()"]
    run = api.database.transaction_blocking
    run(lambda conn: [conn.exec_driver_sql(statement) for statement in statements])
    body = event("ev-1", "delivered", message_id)

    response = await deliver(api, integration_id, body)
    assert response.status_code == 503
    assert response.json() == {
        "success": False,
        "message": "The webhook could not be recorded now; deliver it again.",
        "code": "webhook_unavailable",
    }
    assert await events_of(api, headers) == []
    assert (await attempt_of(api, headers, message_id))["delivery_status"] == "accepted"

    run(lambda conn: [conn.exec_driver_sql(statement) for statement in undo])
    again = await deliver(api, integration_id, body)  # the provider's retry
    assert again.status_code == 200 and again.json()["data"]["applied"] == 1


async def test_no_secret_signature_or_body_reaches_a_log_or_an_answer(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _, headers = api.tenant_token("acme")
    integration_id, message_id = await sent_sms(api, headers)
    marker = "body-marker-6c2d"
    good = msgspec.json.encode({"id": marker, "status": "delivered", "object": message_id})
    signed = webhook_headers(CANARY, good, url=f"{SEEN_URL}/webhooks/{integration_id}")
    answers = [
        await api.client.post(f"/webhooks/{integration_id}", content=good, headers=signed),
        await deliver(api, integration_id, good, secret="tok-ok-guess"),
        await deliver(api, integration_id, b'{"boom": true}'),  # its message holds the secret
        await deliver(api, "01" + "b" * 24, good),
    ]
    assert [a.status_code for a in answers] == [200, 400, 400, 400]
    logged = caplog.text
    assert "rejected: signature" in logged and "rejected: plugin_error" in logged
    for secret in (CANARY, signed["X-Test-Signature"], marker):
        assert secret not in logged
        assert not [a for a in answers if secret in a.text]
    events = await api.client.get(EVENTS, headers=headers)
    assert CANARY not in events.text


# -- the API ----------------------------------------------------------------------------------


async def test_events_are_listed_newest_first_filtered_and_kept_to_their_tenant(
    api: Api,
) -> None:
    _, headers = api.tenant_token("acme")
    integration_id, message_id = await sent_sms(api, headers)
    await deliver(api, integration_id, event("ev-1", "sent", message_id))
    await deliver(api, integration_id, event("ev-2", "delivered", "msg-unknown"))
    await deliver(api, integration_id, event("ev-3", "delivered", message_id))

    listed = await api.client.get(EVENTS, params={"per_page": 2}, headers=headers)
    body = listed.json()
    assert [e["dedupe_key"] for e in body["data"]] == ["ev-3", "ev-2"]
    assert body["meta"] == {"current_page": 1, "per_page": 2, "total": 3, "last_page": 2}
    assert body["links"]["next"] == "/api/v1/webhook-events?per_page=2&page=2"
    applied = await events_of(api, headers, applied="true")
    assert [e["dedupe_key"] for e in applied] == ["ev-3", "ev-1"]
    assert [e["dedupe_key"] for e in await events_of(api, headers, applied="false")] == ["ev-2"]
    typed = await events_of(api, headers, type="message.sent", integration_id=integration_id)
    assert [e["dedupe_key"] for e in typed] == ["ev-1"]
    assert await events_of(api, headers, integration_id="01" + "c" * 24) == []

    one = await api.client.get(f"{EVENTS}/{body['data'][0]['id']}", headers=headers)
    assert one.status_code == 200 and one.json()["data"] == body["data"][0]
    _, other = api.tenant_token("other")
    hidden = await api.client.get(f"{EVENTS}/{body['data'][0]['id']}", headers=other)
    assert hidden.status_code == 404 and hidden.json()["code"] == "not_found"
    assert (await api.client.get(f"{EVENTS}/nope", headers=headers)).status_code == 404
    assert await events_of(api, other) == []


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"applied": "maybe"}, "applied"),
        ({"integration_id": "x"}, "integration_id"),
        ({"type": "a\x00b"}, "type"),
        ({"type": "t" * 256}, "type"),
        ({"per_page": 0}, "per_page"),
    ],
)
async def test_bad_event_filters_are_422(api: Api, params: dict[str, Any], key: str) -> None:
    _, headers = api.tenant_token("acme")
    response = await api.client.get(EVENTS, params=params, headers=headers)
    assert response.status_code == 422 and list(response.json()["errors"]) == [key]


async def test_the_integration_webhook_endpoint_without_a_public_url(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    textly = await messaging(api, headers, "textly", CANARY)
    paymo = (
        await api.client.post(
            "/api/v1/integrations",
            json={
                "provider": "paymo",
                "credentials": {"publishable_key": "pk_1", "secret_key": "sk_1"},
                "enabled_capabilities": [],
            },
            headers=headers,
        )
    ).json()["data"]["id"]
    shown = await api.client.get(f"/api/v1/integrations/{textly}/webhook", headers=headers)
    assert shown.status_code == 200
    assert shown.json()["data"] == {
        "url": None,
        "path": f"/webhooks/{textly}",
        "receives_webhooks": True,
        "secret_configured": True,
    }
    assert CANARY not in shown.text
    unconfigured = await api.client.get(f"/api/v1/integrations/{paymo}/webhook", headers=headers)
    assert unconfigured.json()["data"]["secret_configured"] is False
    await api.client.patch(
        f"/api/v1/integrations/{paymo}",
        json={"credentials": {"webhook_secret": "whsec_1"}},
        headers=headers,
    )
    configured = await api.client.get(f"/api/v1/integrations/{paymo}/webhook", headers=headers)
    assert configured.json()["data"]["secret_configured"] is True
    _, other = api.tenant_token("other")
    hidden = await api.client.get(f"/api/v1/integrations/{textly}/webhook", headers=other)
    assert hidden.status_code == 404
    unauthenticated = await api.client.get(f"/api/v1/integrations/{textly}/webhook")
    assert unauthenticated.status_code == 401
    # Sends carry no callback URL while there is no public URL to give.
    await rule(api, headers, integration_id=textly, is_default=True)
    await api.client.post(SMS, json=MESSAGE, headers=headers)
    assert SENT[-1]["webhook"] is None


# -- behind a proxy: RELAYKIT_PUBLIC_URL ------------------------------------------------------

PUBLIC = "https://relay.example.com/relaykit"


@pytest.fixture
async def proxied(settings: Settings, plugin_manager: RelaykitPluginManager) -> AsyncIterator[Api]:
    app = create_app(
        msgspec.structs.replace(settings, public_url=PUBLIC + "/"), plugin_manager=plugin_manager
    )
    async with AsyncTestClient(app=app) as client:
        database = open_database(settings, migrate=False)
        try:
            yield Api(client, database)
        finally:
            database.dispose()


async def test_behind_a_proxy_sends_carry_the_callback_and_the_public_url_is_signed(
    proxied: Api,
) -> None:
    api = proxied
    _, headers = api.tenant_token("acme")
    integration_id, message_id = await sent_sms(api, headers)
    callback = f"{PUBLIC}/webhooks/{integration_id}"
    assert SENT[-1]["webhook"] == callback
    shown = await api.client.get(f"/api/v1/integrations/{integration_id}/webhook", headers=headers)
    assert shown.json()["data"]["url"] == callback

    body = event("ev-1", "delivered", message_id)
    as_seen = await deliver(api, integration_id, body)  # signed for the URL the server saw
    assert as_seen.status_code == 400
    with_query = f"/webhooks/{integration_id}?attempt=1"
    signed = webhook_headers(CANARY, body, url=PUBLIC + with_query)
    response = await api.client.post(with_query, content=body, headers=signed)
    assert response.status_code == 200 and response.json()["data"]["applied"] == 1
