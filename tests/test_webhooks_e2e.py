"""Inbound webhooks end to end over real HTTP: ``relaykit serve`` with ``RELAYKIT_PUBLIC_URL``
set to its own address, the real Twilio, Plivo and Stripe plugins, and local stand-ins of the
three providers.

The messaging stand-in plays the providers' side of the loop: a send that carries a status
callback URL is answered, then followed by the status callbacks Twilio and Plivo document,
signed with the integration's auth token by code written from the providers' documents and
SDKs (tests/messaging_standin.py), not from the plugins: each side checks the other. Stripe
has no per-request callback URL; the tests sign its events with the integration's
``webhook_secret`` as Stripe does, and post them to the URL the API gives for the dashboard.
API reads go through ``relaykit.client``; the webhooks themselves are raw HTTP.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from relaykit.client import Client, NotFound
from relaykit.testing.standin import Answer, StandIn, StandInRequest, stand_in
from relaykit.wire import DeliveryAttempt, Operation

from .conftest import Server, cli_env, run_cli, start_public_server, stop_server
from .messaging_standin import (
    Messaging,
    plivo_callback,
    plivo_status_fields,
    twilio_callback,
    twilio_status_fields,
)
from .stripe_standin import (
    PAYMENT_INTENTS,
    StripeBehaviour,
    payment_intent_event,
    stripe_signature_header,
)
from .test_verification_e2e import wait_for

MESSAGE = {"to": "+14155552345", "body": "Your code is 123456"}
FROM = "+15550100000"
# Canary secrets: none of them may show in an answer or in the server's log.
ACME_TWILIO_TOKEN = "canary-twilio-token-acme-5c1d"
GLOBEX_TWILIO_TOKEN = "canary-twilio-token-globex-9e4b"
ACME_PLIVO_TOKEN = "canary-plivo-token-acme-77aa"
ACME_WEBHOOK_SECRET = "whsec_canary_acme_3f0e2d"
GLOBEX_WEBHOOK_SECRET = "whsec_canary_globex_81c2"
CANARIES = (
    ACME_TWILIO_TOKEN,
    GLOBEX_TWILIO_TOKEN,
    ACME_PLIVO_TOKEN,
    ACME_WEBHOOK_SECRET,
    GLOBEX_WEBHOOK_SECRET,
)
REJECTED = {"success": False, "message": "The webhook was rejected.", "code": "webhook_rejected"}


class Tenant:
    """One tenant's view of the running server: its client, and what it configures."""

    def __init__(self, server: Server, token: str) -> None:
        self.server = server
        self.token = token
        self.api: Client = server.api(token)

    def configure(self, provider: str, credentials: dict[str, str]) -> str:
        capabilities = {
            "twilio": ["send_sms", "send_whatsapp"],
            "plivo": ["send_sms", "send_whatsapp"],
            "stripe": ["initiate_payment", "process_refund", "verify_payment"],
        }[provider]
        made = self.api.create_integration(provider, credentials, capabilities)
        wait_for(lambda: self.api.get_integration(made.id).status == "active")
        capability = "initiate_payment" if provider == "stripe" else "send_sms"
        self.api.create_routing_rule(capability, made.id, is_default=True, priority=100)
        return made.id

    def twilio(self, auth_token: str, account_sid: str = "AC-webhooks-e2e") -> str:
        return self.configure(
            "twilio", {"account_sid": account_sid, "auth_token": auth_token, "from_number": FROM}
        )

    def plivo(self, auth_token: str) -> str:
        return self.configure(
            "plivo", {"auth_id": "MA-webhooks-e2e", "auth_token": auth_token, "from_number": FROM}
        )

    def stripe(self, webhook_secret: str | None) -> str:
        credentials = {"publishable_key": "pk_test_webhooks", "secret_key": "sk_test_good_wh"}
        if webhook_secret is not None:
            credentials["webhook_secret"] = webhook_secret
        return self.configure("stripe", credentials)

    def send(self) -> Operation:
        sent = self.api.run_operation("send_sms", MESSAGE)
        assert sent.status == "succeeded"
        return sent

    def pay(self, amount: int = 1999) -> Operation:
        paid = self.api.run_operation("initiate_payment", {"amount": amount, "currency": "usd"})
        assert paid.status == "succeeded"
        return paid

    def attempt(self, operation: Operation) -> DeliveryAttempt:
        """The operation's one succeeded attempt, as the attempts API shows it now."""
        page = self.api.list_delivery_attempts(operation_id=operation.id)
        (attempt,) = [a for a in page.data if a.status == "succeeded"]
        return attempt

    def wait_delivery(self, operation: Operation, status: str) -> DeliveryAttempt:
        return wait_for(
            lambda: (a := self.attempt(operation)).delivery_status == status and a, timeout=15
        )


class World:
    def __init__(
        self,
        server: Server,
        acme: Tenant,
        globex: Tenant,
        providers: StandIn,
        messaging: Messaging,
        stripe: StripeBehaviour,
    ) -> None:
        self.server = server
        self.acme = acme
        self.globex = globex
        self.providers = providers
        self.messaging = messaging
        self.stripe = stripe

    def messaging_requests(self, suffix: str) -> list[dict[str, list[str]]]:
        """The form bodies of the sends (POSTs to a path ending ``suffix``) the stand-in got."""
        sent = self.providers.requests_matching(
            lambda r: r.method == "POST" and r.path.endswith(suffix)
        )
        return [parse_qs(r.body.decode()) for r in sent]

    def messaging_json(self, suffix: str) -> list[dict[str, Any]]:
        """The JSON bodies of the sends (POSTs to a path ending ``suffix``) the stand-in got."""
        sent = self.providers.requests_matching(
            lambda r: r.method == "POST" and r.path.endswith(suffix)
        )
        return [json.loads(r.body) for r in sent]

    def url(self, integration_id: str) -> str:
        return f"{self.server.base_url}/webhooks/{integration_id}"

    def post(self, url: str, headers: dict[str, str], body: bytes) -> httpx.Response:
        return httpx.post(url, content=body, headers=headers, timeout=10)

    def post_stripe(
        self, integration_id: str, event: dict[str, Any], secret: str, **signing: Any
    ) -> httpx.Response:
        body = json.dumps(event).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": stripe_signature_header(body, secret, **signing),
        }
        return self.post(self.url(integration_id), headers, body)


def providers_of(
    messaging: Messaging, stripe: StripeBehaviour
) -> Callable[[StandInRequest], Answer]:
    def respond(request: StandInRequest) -> Answer:  # their paths do not overlap
        if request.path == "/v1/balance" or request.path.startswith(PAYMENT_INTENTS):
            return stripe(request)
        return messaging(request)

    return respond


def start_world(tmp_path: Path, *, public_url: str | None = None) -> Iterator[World]:
    messaging, stripe = Messaging(), StripeBehaviour()
    with stand_in(providers_of(messaging, stripe)) as providers:
        env = cli_env(
            tmp_path / "home",
            {
                "RELAYKIT_TWILIO_API_BASE": providers.base_url,
                "RELAYKIT_PLIVO_API_BASE": providers.base_url,
                "RELAYKIT_STRIPE_API_BASE": providers.base_url,
            },
        )
        tokens = {}
        for name in ("acme", "globex"):
            run_cli(["tenants", "create", name], env)
            created = run_cli(["tokens", "create", "--tenant", name], env)
            tokens[name] = created.stdout.strip().splitlines()[-1]
        server = start_public_server(env, tmp_path / "server.log", public_url=public_url)
        acme, globex = Tenant(server, tokens["acme"]), Tenant(server, tokens["globex"])
        try:
            yield World(server, acme, globex, providers, messaging, stripe)
        finally:
            acme.api.close()
            globex.api.close()
            stop_server(server)
            log = server.log.read_text()
            leaked = [canary for canary in CANARIES if canary in log]
            assert not leaked, f"secrets in the server's log: {leaked}"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from start_world(tmp_path)


# -- Twilio and Plivo: the status callback loop ----------------------------------------------


def test_a_twilio_send_is_marked_delivered_by_its_signed_status_callback(world: World) -> None:
    twilio = world.acme.twilio(ACME_TWILIO_TOKEN)
    webhook = world.acme.api.get_integration_webhook(twilio)
    assert webhook.url == world.url(twilio)
    assert (webhook.receives_webhooks, webhook.secret_configured) == (True, True)

    sent = world.acme.send()
    # The send carried the integration's webhook URL as Twilio's StatusCallback ...
    (request,) = world.messaging_requests("/Messages.json")
    assert request["StatusCallback"] == [webhook.url]
    # ... and the stand-in's signed callbacks to it (sent, then delivered) were taken.
    posted = world.messaging.wait_posted(2)
    assert [(p.callback.status, p.status_code) for p in posted] == [
        ("sent", 200),
        ("delivered", 200),
    ]
    assert [p.answer["data"] for p in posted] == [{"events": 1, "applied": 1, "duplicates": 0}] * 2

    attempt = world.acme.wait_delivery(sent, "delivered")
    assert attempt.provider_object_id == sent.result["provider_message_id"]
    assert attempt.delivery_updated_at is not None and attempt.delivery_updated_at.endswith("Z")
    # The operation shows it too.
    (shown,) = [a for a in world.acme.api.get_operation(sent.id).attempts if a.id == attempt.id]
    assert shown.delivery_status == "delivered"

    events = world.acme.api.list_webhook_events(integration_id=twilio)
    assert events.meta.total == 2
    by_type = {e.type: e for e in events.data}
    assert set(by_type) == {"message.sent", "message.delivered"}
    delivered = by_type["message.delivered"]
    assert (delivered.object_id, delivered.status, delivered.applied) == (
        attempt.provider_object_id,
        "delivered",
        True,
    )
    assert world.acme.api.get_webhook_event(delivered.id) == delivered


@pytest.mark.parametrize(
    "schemes", [("v2", "v3"), ("v3",), ("v2",)], ids=["v2+v3", "v3-only", "v2-only"]
)
def test_a_plivo_send_is_marked_delivered_by_its_signed_status_callback(
    world: World, schemes: tuple[str, ...]
) -> None:
    world.messaging.plivo_schemes = schemes
    plivo = world.acme.plivo(ACME_PLIVO_TOKEN)
    sent = world.acme.send()
    (request,) = world.messaging_json("/Message/")
    assert (request["url"], request["method"]) == (world.url(plivo), "POST")
    posted = world.messaging.wait_posted(2)
    assert [(p.callback.status, p.status_code) for p in posted] == [
        ("sent", 200),
        ("delivered", 200),
    ]
    attempt = world.acme.wait_delivery(sent, "delivered")
    assert attempt.provider_object_id == sent.result["provider_message_id"]
    applied = world.acme.api.list_webhook_events(integration_id=plivo, applied=True)
    assert sorted(str(e.status) for e in applied.data) == ["delivered", "sent"]


def test_a_late_sent_does_not_move_a_delivered_message_back(world: World) -> None:
    world.messaging.statuses[ACME_TWILIO_TOKEN] = ("delivered", "sent", "delivered")
    twilio = world.acme.twilio(ACME_TWILIO_TOKEN)
    sent = world.acme.send()
    posted = world.messaging.wait_posted(3)
    assert [p.status_code for p in posted] == [200, 200, 200]
    assert [p.answer["data"] for p in posted] == [
        {"events": 1, "applied": 1, "duplicates": 0},  # delivered
        {"events": 1, "applied": 0, "duplicates": 0},  # sent, late: stored, not applied
        {"events": 1, "applied": 0, "duplicates": 1},  # delivered again: a repeat
    ]
    attempt = world.acme.attempt(sent)
    assert attempt.delivery_status == "delivered"
    late = world.acme.api.list_webhook_events(integration_id=twilio, applied=False)
    assert [(e.type, e.applied, e.attempt_count) for e in late.data] == [("message.sent", False, 0)]
    # A callback about a message relaykit never sent: stored, applied to nothing.
    stranger = "SM" + "9" * 32
    fields = twilio_status_fields(
        "AC-webhooks-e2e", stranger, "delivered", to=MESSAGE["to"], from_=FROM
    )
    headers, body = twilio_callback(world.url(twilio), ACME_TWILIO_TOKEN, fields)
    answer = world.post(world.url(twilio), headers, body)
    assert answer.json()["data"] == {"events": 1, "applied": 0, "duplicates": 0}
    unapplied = world.acme.api.list_webhook_events(integration_id=twilio, applied=False).data
    assert [e.object_id for e in unapplied] == [stranger, sent.result["provider_message_id"]]
    assert world.acme.attempt(sent).delivery_status == "delivered"


def test_a_callback_that_beats_the_sends_answer_is_applied_once_the_send_is_recorded(
    world: World,
) -> None:
    """Twilio may call back before relaykit has read its answer to the send (the attempt is
    still in flight, its message id unknown): the event is stored, then applied when the
    attempt is recorded."""
    world.messaging.hold_callbacks = True
    world.messaging.statuses[ACME_TWILIO_TOKEN] = ("delivered",)
    twilio = world.acme.twilio(ACME_TWILIO_TOKEN)
    world.messaging.mode[ACME_TWILIO_TOKEN] = "hold"
    done: dict[str, Operation] = {}

    def send() -> None:
        with world.server.api(world.acme.token) as relay:
            done["sent"] = relay.run_operation("send_sms", MESSAGE)

    sending = threading.Thread(target=send)
    sending.start()
    try:
        assert world.messaging.accepted.wait(15)
        (early,) = world.messaging.flush_callbacks()
        assert early.status_code == 200
        assert early.answer["data"] == {"events": 1, "applied": 0, "duplicates": 0}
    finally:
        world.messaging.release.set()
        sending.join(timeout=30)
    world.acme.wait_delivery(done["sent"], "delivered")
    (event,) = world.acme.api.list_webhook_events(integration_id=twilio).data
    assert (event.applied, event.attempt_count) == (True, 1)


def test_fifty_concurrent_copies_of_one_callback_are_applied_once(world: World) -> None:
    world.messaging.hold_callbacks = True
    world.messaging.statuses[ACME_TWILIO_TOKEN] = ("delivered",)
    twilio = world.acme.twilio(ACME_TWILIO_TOKEN)
    sent = world.acme.send()
    (callback,) = world.messaging.held
    start = threading.Barrier(50)

    def deliver(_: int) -> httpx.Response:
        with httpx.Client(timeout=30) as client:
            start.wait()
            return client.post(callback.url, content=callback.body, headers=callback.headers)

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(deliver, range(50)))
    assert [a.status_code for a in answers] == [200] * 50
    receipts = [a.json()["data"] for a in answers]
    assert sum(r["applied"] for r in receipts) == 1
    assert sum(r["duplicates"] for r in receipts) == 49
    events = world.acme.api.list_webhook_events(integration_id=twilio)
    assert events.meta.total == 1
    (event,) = events.data
    assert (event.applied, event.attempt_count) == (True, 1)
    assert world.acme.attempt(sent).delivery_status == "delivered"


# -- Stripe: events signed with the integration's webhook_secret -----------------------------


def test_a_stripe_payment_is_marked_succeeded_then_refunded_by_signed_events(
    world: World,
) -> None:
    stripe = world.acme.stripe(ACME_WEBHOOK_SECRET)
    webhook = world.acme.api.get_integration_webhook(stripe)
    assert webhook.url == world.url(stripe)  # what to paste into Stripe's dashboard
    assert (webhook.receives_webhooks, webhook.secret_configured) == (True, True)
    paid = world.acme.pay()
    intent_id = paid.result["provider_payment_id"]
    intent = dict(world.stripe.payment_intents[intent_id])
    assert world.acme.attempt(paid).delivery_status == "accepted"

    succeeded = payment_intent_event(
        "payment_intent.succeeded", {**intent, "status": "succeeded", "amount_received": 1999}
    )
    answer = world.post_stripe(stripe, succeeded, ACME_WEBHOOK_SECRET)
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"] == {"events": 1, "applied": 1, "duplicates": 0}
    attempt = world.acme.attempt(paid)
    assert (attempt.provider_object_id, attempt.delivery_status) == (intent_id, "succeeded")

    # Stripe retries: the same event (same id), signed anew, changes nothing.
    again = world.post_stripe(stripe, succeeded, ACME_WEBHOOK_SECRET)
    assert again.json()["data"] == {"events": 1, "applied": 0, "duplicates": 1}

    # A late payment_failed does not undo the success.
    failed = payment_intent_event(
        "payment_intent.payment_failed",
        {**intent, "last_payment_error": {"code": "card_declined", "decline_code": "generic"}},
    )
    assert world.post_stripe(stripe, failed, ACME_WEBHOOK_SECRET).json()["data"]["applied"] == 0
    assert world.acme.attempt(paid).delivery_status == "succeeded"

    # An event relaykit does not apply is stored, not applied.
    other = payment_intent_event("customer.created", {"id": "cus_123", "object": "customer"})
    assert world.post_stripe(stripe, other, ACME_WEBHOOK_SECRET).json()["data"]["applied"] == 0

    charge = {
        "id": "ch_webhooks_e2e",
        "object": "charge",
        "amount": 1999,
        "amount_refunded": 1999,
        "payment_intent": intent_id,
        "refunded": True,
        "status": "succeeded",
    }
    refunded = payment_intent_event("charge.refunded", charge)
    assert world.post_stripe(stripe, refunded, ACME_WEBHOOK_SECRET).json()["data"]["applied"] == 1
    assert world.acme.attempt(paid).delivery_status == "refunded"

    events = world.acme.api.list_webhook_events(integration_id=stripe)
    assert events.meta.total == 4
    stored = {e.type: e for e in events.data}
    assert stored["customer.created"].applied is False
    assert stored["payment_intent.payment_failed"].provider_code == "generic"
    only = world.acme.api.list_webhook_events(type="charge.refunded")
    assert [e.dedupe_key for e in only.data] == [refunded["id"]]


def test_a_stripe_secret_roll_accepts_either_signature_and_refuses_stale_ones(
    world: World,
) -> None:
    stripe = world.acme.stripe(ACME_WEBHOOK_SECRET)
    paid = world.acme.pay()
    intent = world.stripe.payment_intents[paid.result["provider_payment_id"]]
    event = payment_intent_event("payment_intent.succeeded", {**intent, "status": "succeeded"})
    stale = world.post_stripe(stripe, event, ACME_WEBHOOK_SECRET, timestamp=int(time.time()) - 301)
    assert (stale.status_code, stale.json()) == (400, REJECTED)
    assert world.acme.api.list_webhook_events(integration_id=stripe).meta.total == 0
    # During a roll Stripe signs with the old secret and the new one: one v1 matching passes.
    rolled = world.post_stripe(stripe, event, ACME_WEBHOOK_SECRET, extra_v1=("0" * 64,))
    assert rolled.status_code == 200, rolled.text
    assert world.acme.attempt(paid).delivery_status == "succeeded"


# -- tenants apart, and what is refused ------------------------------------------------------


def test_one_tenants_signed_webhooks_are_rejected_at_another_tenants_url(world: World) -> None:
    # The same Twilio account SID on both sides, so only the secret tells them apart; the
    # stand-in numbers messages per auth token, so both sends get the same message SID.
    world.messaging.hold_callbacks = True
    world.messaging.statuses[ACME_TWILIO_TOKEN] = ("delivered",)
    world.messaging.statuses[GLOBEX_TWILIO_TOKEN] = ("delivered",)
    acme_twilio = world.acme.twilio(ACME_TWILIO_TOKEN)
    globex_twilio = world.globex.twilio(GLOBEX_TWILIO_TOKEN)
    acme_sent, globex_sent = world.acme.send(), world.globex.send()
    assert acme_sent.result["provider_message_id"] == globex_sent.result["provider_message_id"]
    acme_callback, globex_callback = world.messaging.held

    # Globex's callback as Twilio sent it, posted to acme's URL; then signed for acme's URL,
    # but with globex's auth token.
    as_sent = world.post(world.url(acme_twilio), globex_callback.headers, globex_callback.body)
    fields = twilio_status_fields(
        "AC-webhooks-e2e",
        globex_sent.result["provider_message_id"],
        "delivered",
        to=MESSAGE["to"],
        from_=FROM,
    )
    headers, body = twilio_callback(world.url(acme_twilio), GLOBEX_TWILIO_TOKEN, fields)
    resigned = world.post(world.url(acme_twilio), headers, body)
    for answer in (as_sent, resigned):
        assert (answer.status_code, answer.json()) == (400, REJECTED)
    assert world.acme.attempt(acme_sent).delivery_status == "accepted"
    assert world.acme.api.list_webhook_events().meta.total == 0

    # At its own URL, globex's callback applies to globex's attempt alone.
    (own,) = [world.messaging.post(globex_callback)]
    assert own.status_code == 200
    assert world.globex.attempt(globex_sent).delivery_status == "delivered"
    assert world.acme.attempt(acme_sent).delivery_status == "accepted"
    assert world.messaging.post(acme_callback).status_code == 200
    assert world.acme.attempt(acme_sent).delivery_status == "delivered"

    # Stripe signs no URL: globex's event, correctly signed with globex's webhook_secret, is
    # still refused at acme's URL, because acme's secret is what checks it.
    acme_stripe = world.acme.stripe(ACME_WEBHOOK_SECRET)
    world.globex.stripe(GLOBEX_WEBHOOK_SECRET)
    paid = world.acme.pay()
    intent = world.stripe.payment_intents[paid.result["provider_payment_id"]]
    event = payment_intent_event("payment_intent.succeeded", {**intent, "status": "succeeded"})
    crossed = world.post_stripe(acme_stripe, event, GLOBEX_WEBHOOK_SECRET)
    assert (crossed.status_code, crossed.json()) == (400, REJECTED)
    assert world.acme.attempt(paid).delivery_status == "accepted"

    # Each tenant reads its own events only.
    (acme_event,) = world.acme.api.list_webhook_events(integration_id=acme_twilio).data
    assert world.globex.api.list_webhook_events(integration_id=acme_twilio).meta.total == 0
    with pytest.raises(NotFound):
        world.globex.api.get_webhook_event(acme_event.id)
    with pytest.raises(NotFound):
        world.globex.api.get_integration_webhook(acme_twilio)
    assert globex_twilio != acme_twilio


def test_rejections_answer_alike_store_nothing_and_leak_no_secret(world: World) -> None:
    world.messaging.hold_callbacks = True
    world.messaging.statuses[ACME_TWILIO_TOKEN] = ("delivered",)
    world.messaging.statuses[ACME_PLIVO_TOKEN] = ("delivered",)
    twilio = world.acme.twilio(ACME_TWILIO_TOKEN)
    plivo_integration = world.acme.api.create_integration(
        "plivo",
        {"auth_id": "MA-webhooks-e2e", "auth_token": ACME_PLIVO_TOKEN, "from_number": FROM},
        ["send_sms"],
    )
    unsigned_stripe = world.acme.stripe(None)  # no webhook_secret configured
    assert world.acme.api.get_integration_webhook(unsigned_stripe).secret_configured is False
    world.acme.send()
    (callback,) = world.messaging.held

    def flipped(body: bytes) -> bytes:
        return body[:-1] + bytes([body[-1] ^ 0x01])

    without_signature = {k: v for k, v in callback.headers.items() if k != "X-Twilio-Signature"}
    plivo_fields = plivo_status_fields(
        "00000000-0000-0000-0000-000000000001", "delivered", to=MESSAGE["to"], from_=FROM
    )
    plivo_url = world.url(plivo_integration.id)
    plivo_headers, plivo_body = plivo_callback(plivo_url, "not-the-token", plivo_fields)
    unknown = "01" + "0" * 24
    stripe_body = json.dumps(payment_intent_event("payment_intent.succeeded", {"id": "pi_1"}))
    attempts = {
        "flipped body byte": (world.url(twilio), callback.headers, flipped(callback.body)),
        "no signature header": (world.url(twilio), without_signature, callback.body),
        "another URL signed": (world.url(twilio) + "?x=1", callback.headers, callback.body),
        "wrong token (plivo)": (plivo_url, plivo_headers, plivo_body),
        "unknown integration": (world.url(unknown), callback.headers, callback.body),
        "not an id": (world.url("not-an-id"), callback.headers, callback.body),
        "no webhook_secret": (
            world.url(unsigned_stripe),
            {"Stripe-Signature": stripe_signature_header(stripe_body.encode(), "whsec_guess")},
            stripe_body.encode(),
        ),
        "not a callback body": (
            world.url(twilio),
            twilio_callback(world.url(twilio), ACME_TWILIO_TOKEN, {"Hello": "world"})[0],
            b"Hello=world",
        ),
    }
    for name, (url, headers, body) in attempts.items():
        answer = world.post(url, headers, body)
        assert (answer.status_code, answer.json()) == (400, REJECTED), name
        assert not any(canary in answer.text for canary in CANARIES), name

    # A deleted integration receives nothing, even correctly signed.
    world.acme.api.delete_integration(plivo_integration.id)
    good_headers, good_body = plivo_callback(plivo_url, ACME_PLIVO_TOKEN, plivo_fields)
    gone = world.post(plivo_url, good_headers, good_body)
    assert (gone.status_code, gone.json()) == (400, REJECTED)

    # A body over RELAYKIT_MAX_BODY_BYTES (1 MiB by default): 413, in the envelope.
    big = world.post(world.url(twilio), callback.headers, b"x" * (1024 * 1024 + 1))
    assert big.status_code == 413
    assert (big.json()["success"], big.json()["code"]) == (False, "payload_too_large")

    assert world.acme.api.list_webhook_events().meta.total == 0
    # The rejections were logged (so the fixture's search of the log for the canary secrets
    # looks at lines that handled them).
    wait_for(lambda: world.server.log.read_text().count("rejected") >= len(attempts), timeout=5)
    # The genuine callback still goes through afterwards.
    assert world.messaging.post(callback).status_code == 200
    assert world.acme.api.list_webhook_events().meta.total == 1


# -- behind a proxy ---------------------------------------------------------------------------


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[World]:
    yield from start_world(tmp_path, public_url="https://relay.example.com")


def test_behind_a_proxy_the_public_url_is_the_one_signed_and_checked(proxied: World) -> None:
    world = proxied
    world.messaging.proxy_to = world.server.base_url  # what the proxy in front does
    twilio = world.acme.twilio(ACME_TWILIO_TOKEN)
    public = f"https://relay.example.com/webhooks/{twilio}"
    assert world.acme.api.get_integration_webhook(twilio).url == public
    sent = world.acme.send()
    (request,) = world.messaging_requests("/Messages.json")
    assert request["StatusCallback"] == [public]
    posted = world.messaging.wait_posted(2)
    assert [p.status_code for p in posted] == [200, 200]
    world.acme.wait_delivery(sent, "delivered")

    # Signed for the address the server listens on instead of the public one: refused.
    fields = twilio_status_fields(
        "AC-webhooks-e2e", sent.result["provider_message_id"], "read", to=MESSAGE["to"], from_=FROM
    )
    headers, body = twilio_callback(world.url(twilio), ACME_TWILIO_TOKEN, fields)
    answer = world.post(world.url(twilio), headers, body)
    assert (answer.status_code, answer.json()) == (400, REJECTED)
    assert world.acme.attempt(sent).delivery_status == "delivered"
