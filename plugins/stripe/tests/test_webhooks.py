"""Stripe's webhooks: the ``Stripe-Signature`` check against stripe-python's own cases, the
events relaykit applies, and relaykit's webhook contract (``WebhookContractTests``).

The signature vectors are stripe-python's (``tests/test_webhook.py``): its payload
``DUMMY_WEBHOOK_PAYLOAD`` and secret ``whsec_test_secret``, and each case of its
``TestWebhookSignature``. Stripe's SDKs publish no fixed signature (their tests sign at the
current time), so the two headers below were made by stripe-python 16.1.0 itself,
``WebhookSignature.generate_signature_header(DUMMY_WEBHOOK_PAYLOAD, secret,
timestamp=1700000000)``, once, and pinned. Event bodies carry the objects of Stripe's
fixtures (shared/provider-specs/stripe_fixtures3.json: ``payment_intent``, ``charge``),
trimmed to the fields read.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from relaykit import WebhookContext, WebhookEvent, WebhookRejected, WebhookRequest
from relaykit.testing import WebhookContractTests
from relaykit_stripe import PROVIDER
from relaykit_stripe.webhooks import (
    parse_signature_header,
    read_event,
    signature_header,
    verify_signature,
)

FIXTURES = (
    Path(__file__).resolve().parents[3].parent
    / "shared"
    / "provider-specs"
    / "stripe_fixtures3.json"
)

# stripe-python tests/test_webhook.py
DUMMY_WEBHOOK_PAYLOAD = """{
  "id": "evt_test_webhook",
  "object": "event",
  "data": { "object": { "id": "rdr_123", "object": "terminal.reader" } }
}"""
DUMMY_WEBHOOK_SECRET = "whsec_test_secret"
# Made by stripe-python 16.1.0's generate_signature_header (see the module docstring).
SIGNED_AT = 1700000000
SDK_HEADER = "t=1700000000,v1=3bfab77baf5f7b6991a46c9b53b6547d7afc56148b10468fcad9f35c1992ffbd"
ROLLED_SECRET = "whsec_rolled_secret"
SDK_ROLLED_SIGNATURE = "f28c3c0fa6bd2adfc9a6adb8e9e4e5c14c4d4564eeb3d895e877a0bb63fff45d"

PAYLOAD = DUMMY_WEBHOOK_PAYLOAD.encode()
AT_SIGNING = WebhookContext(now=dt.datetime.fromtimestamp(SIGNED_AT, dt.UTC))

WEBHOOK_SECRET = "whsec_canary_0123456789"
CREDENTIALS = {
    "publishable_key": "pk_test_canary_public",
    "secret_key": "sk_test_canary_5f1c0ffee0ddba11",
    "webhook_secret": WEBHOOK_SECRET,
}
INTENT_ID = "pi_1PgafyB7WZ01zgkWSjxsAJo3"  # resources.payment_intent.id
CHARGE_ID = "ch_1PgafuB7WZ01zgkWXYmPNZs8"  # resources.charge.id


def event(event_type: str, obj: dict[str, Any], event_id: str = "evt_1PgcEhB7WZ01zgkW") -> bytes:
    """A Stripe ``event`` as Stripe delivers it (the shape of resources.event)."""
    body = {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": 1721948530,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
    return json.dumps(body).encode()


def intent(**fields: Any) -> dict[str, Any]:
    return {"id": INTENT_ID, "object": "payment_intent", "amount": 1099, "currency": "usd"} | fields


def charge(**fields: Any) -> dict[str, Any]:
    return {
        "id": CHARGE_ID,
        "object": "charge",
        "amount": 100,
        "amount_refunded": 100,
        "payment_intent": INTENT_ID,
        "refunded": True,
    } | fields


def receive(
    body: bytes, *, secret: str = WEBHOOK_SECRET, at: int = SIGNED_AT
) -> list[WebhookEvent]:
    request = WebhookRequest(
        method="POST",
        url="https://relay.example.com/webhooks/int_1",
        headers={"stripe-signature": signature_header(body, secret, at)},
        body=body,
    )
    return PROVIDER.webhooks.receive(request, CREDENTIALS, AT_SIGNING)  # type: ignore[union-attr]


# -- the signature: stripe-python's cases ------------------------------------------------------


def test_the_sdks_header_is_what_relaykit_signs() -> None:
    assert signature_header(PAYLOAD, DUMMY_WEBHOOK_SECRET, SIGNED_AT) == SDK_HEADER


def test_valid_header_and_signature() -> None:
    verify_signature(PAYLOAD, SDK_HEADER, DUMMY_WEBHOOK_SECRET, AT_SIGNING)


def test_header_contains_valid_signature() -> None:
    verify_signature(PAYLOAD, SDK_HEADER + ",v1=bad_signature", DUMMY_WEBHOOK_SECRET, AT_SIGNING)


@pytest.mark.parametrize("secret", [DUMMY_WEBHOOK_SECRET, ROLLED_SECRET])
def test_during_a_secret_roll_either_secret_passes(secret: str) -> None:
    # Stripe sends one v1 per active secret while the old one is being rolled.
    header = f"{SDK_HEADER},v1={SDK_ROLLED_SIGNATURE}"
    verify_signature(PAYLOAD, header, secret, AT_SIGNING)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("i'm not even a real signature header", "no timestamp"),  # raise_on_malformed_header
        ("bad_header", "no timestamp"),  # raise_on_invalid_header
        (SDK_HEADER.replace("v1=", "v0="), "no v1 signature"),  # no_signatures_with_expected_scheme
        ("t=1700000000,v1=bad_signature", "matches"),  # no_valid_signatures_for_payload
        ("v1=" + SDK_HEADER.split("v1=")[1], "no timestamp"),
        (SDK_HEADER.replace("t=1700000000", "t=17e8"), "not a Unix time"),
        (SDK_HEADER.replace("t=1700000000", "t="), "not a Unix time"),
        (SDK_HEADER.replace("t=1700000000", "t=-1"), "not a Unix time"),
        (SDK_HEADER.replace("t=1700000000", "t=" + "9" * 5000), "not a Unix time"),
        (SDK_HEADER.replace("t=1700000000", "t=1700000001"), "matches"),
        (SDK_HEADER.upper(), "no timestamp"),
    ],
)
def test_a_bad_header_is_rejected(header: str, reason: str) -> None:
    with pytest.raises(WebhookRejected, match=reason) as caught:
        verify_signature(PAYLOAD, header, DUMMY_WEBHOOK_SECRET, AT_SIGNING)
    assert DUMMY_WEBHOOK_SECRET not in str(caught.value)


def test_a_wrong_secret_is_rejected() -> None:
    with pytest.raises(WebhookRejected, match="matches"):
        verify_signature(PAYLOAD, SDK_HEADER, "whsec_test_secrets", AT_SIGNING)


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [(0, True), (300, True), (-300, True), (301, False), (-301, False), (86400, False)],
)
def test_the_timestamp_must_be_within_the_tolerance_either_way(offset: int, accepted: bool) -> None:
    # raise_on_timestamp_outside_tolerance; a timestamp from the future is refused too.
    now = WebhookContext(now=dt.datetime.fromtimestamp(SIGNED_AT + offset, dt.UTC), tolerance=300)
    if accepted:
        verify_signature(PAYLOAD, SDK_HEADER, DUMMY_WEBHOOK_SECRET, now)
    else:
        with pytest.raises(WebhookRejected, match="outside the 300 s tolerance"):
            verify_signature(PAYLOAD, SDK_HEADER, DUMMY_WEBHOOK_SECRET, now)


def test_the_tolerance_is_the_contexts() -> None:
    later = dt.datetime.fromtimestamp(SIGNED_AT + 15, dt.UTC)
    with pytest.raises(WebhookRejected, match="15 s old"):
        verify_signature(
            PAYLOAD, SDK_HEADER, DUMMY_WEBHOOK_SECRET, WebhookContext(now=later, tolerance=10)
        )
    verify_signature(
        PAYLOAD, SDK_HEADER, DUMMY_WEBHOOK_SECRET, WebhookContext(now=later, tolerance=20)
    )


def test_parse_signature_header_keeps_every_v1_and_the_first_t() -> None:
    assert parse_signature_header("t=5,v1=a,v0=z,t=6, v1=b") == (5, ["a", "b"])


# -- events ------------------------------------------------------------------------------------


def test_payment_intent_succeeded() -> None:
    [got] = receive(event("payment_intent.succeeded", intent(status="succeeded")))
    assert got == WebhookEvent(
        dedupe_key="evt_1PgcEhB7WZ01zgkW",
        type="payment_intent.succeeded",
        occurred_at=dt.datetime(2024, 7, 25, 23, 2, 10, tzinfo=dt.UTC),
        object_id=INTENT_ID,
        status="succeeded",
    )


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (
            {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds"},
            "insufficient_funds",
        ),
        ({"type": "card_error", "code": "expired_card"}, "expired_card"),
        ({"type": "idempotency_error"}, None),  # resources.payment_intent.last_payment_error
        (None, None),
    ],
)
def test_payment_intent_payment_failed(error: Any, code: str | None) -> None:
    body = event("payment_intent.payment_failed", intent(last_payment_error=error))
    [got] = receive(body)
    assert (got.object_id, got.status, got.provider_code) == (INTENT_ID, "failed", code)


@pytest.mark.parametrize(
    ("fields", "object_id", "status"),
    [
        ({}, INTENT_ID, "refunded"),
        ({"payment_intent": {"id": INTENT_ID, "object": "payment_intent"}}, INTENT_ID, "refunded"),
        # A partial refund: the payment stands; stored, not applied.
        ({"refunded": False, "amount_refunded": 40}, INTENT_ID, None),
        # A charge made without a PaymentIntent is not one relaykit made.
        ({"payment_intent": None}, None, None),
    ],
)
def test_charge_refunded(fields: dict[str, Any], object_id: str | None, status: str | None) -> None:
    [got] = receive(event("charge.refunded", charge(**fields)))
    assert (got.type, got.object_id, got.status) == ("charge.refunded", object_id, status)


def test_other_types_are_stored_only() -> None:
    [got] = receive(event("payment_intent.created", intent(status="requires_payment_method")))
    assert (got.type, got.object_id, got.status) == ("payment_intent.created", None, None)
    assert got.dedupe_key == "evt_1PgcEhB7WZ01zgkW"


def test_stripes_fixture_event_is_stored_only() -> None:
    if not FIXTURES.is_file():
        pytest.skip(f"{FIXTURES} is not beside this checkout")
    resources = json.loads(FIXTURES.read_text(encoding="utf-8"))["resources"]
    got = read_event(resources["event"])
    assert (got.dedupe_key, got.type, got.status) == (
        resources["event"]["id"],
        "plan.created",
        None,
    )
    # The trimmed objects above keep the fixtures' ids.
    assert resources["payment_intent"]["id"] == INTENT_ID
    assert resources["charge"]["id"] == CHARGE_ID
    assert {"payment_intent", "refunded", "amount_refunded"} <= set(resources["charge"])


@pytest.mark.parametrize(
    "body",
    [
        event("payment_intent.succeeded", {"object": "payment_intent"}),
        event("payment_intent.payment_failed", {"id": 12}),
        event("charge.refunded", {"object": "charge"}),
        json.dumps({"id": "evt_1", "object": "event"}).encode(),
        json.dumps({"type": "payment_intent.succeeded"}).encode(),
        json.dumps(["evt_1"]).encode(),
        b"not json",
    ],
)
def test_a_body_that_is_not_a_stripe_event_is_rejected(body: bytes) -> None:
    with pytest.raises(WebhookRejected):
        receive(body)


def test_a_bad_created_leaves_occurred_at_empty() -> None:
    body = json.loads(event("payment_intent.succeeded", intent()))
    for created in ("2024-07-25", True, 10**20, None):
        got = read_event({**body, "created": created})
        assert got.occurred_at is None and got.status == "succeeded"


def test_an_integration_without_a_webhook_secret_is_rejected() -> None:
    request = WebhookRequest(
        method="POST",
        url="https://relay.example.com/webhooks/int_1",
        headers={"stripe-signature": SDK_HEADER},
        body=PAYLOAD,
    )
    credentials = {k: v for k, v in CREDENTIALS.items() if k != "webhook_secret"}
    with pytest.raises(WebhookRejected, match="no webhook_secret"):
        PROVIDER.webhooks.receive(request, credentials, AT_SIGNING)  # type: ignore[union-attr]


# -- relaykit's webhook contract ---------------------------------------------------------------


class TestStripeWebhooks(WebhookContractTests):
    provider = PROVIDER
    credentials = CREDENTIALS
    sample_body = event("payment_intent.succeeded", intent(status="succeeded"))
    signature_headers = ("stripe-signature",)
    timestamped = True

    def sign(
        self, body: bytes, credentials: Mapping[str, Any], signed_at: dt.datetime
    ) -> WebhookRequest:
        header = signature_header(body, credentials["webhook_secret"], int(signed_at.timestamp()))
        return WebhookRequest(
            method="POST",
            url=self.webhook_url,
            headers={"stripe-signature": header, "content-type": "application/json"},
            body=body,
        )
