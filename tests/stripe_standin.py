"""A local stand-in for Stripe's ``GET /v1/balance``, driven by the secret key it is sent.

Bodies are Stripe's own: the balance fixture (shared/provider-specs/stripe_fixtures3.json,
``resources.balance``) and Stripe's error object. The key's prefix picks the behaviour:

* ``sk_test_good_…``: 200 with the balance;
* ``sk_test_bad_…``: 401 "Invalid API Key provided: sk_test_****";
* ``sk_test_flaky_…``: 503 for the first two requests with that key, then 200;
* ``sk_test_hang_…``: never answers;
* ``sk_test_stall_once_…``: never answers the first request with that key, then 200.

With a ``sk_test_good_…`` key it also creates and retrieves PaymentIntents
(``POST /v1/payment_intents``, ``GET /v1/payment_intents/{id}``), shaped as Stripe's
``payment_intent`` fixture and kept in ``payment_intents`` so a test can build the webhook
event Stripe would send about one (``payment_intent_event``). A new intent is
``requires_payment_method``, as one created without ``confirm`` is.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import parse_qsl

from relaykit.testing.standin import Answer, StandInRequest

BALANCE = {
    "available": [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}],
    "connect_reserved": [{"amount": 0, "currency": "usd"}],
    "livemode": False,
    "object": "balance",
    "pending": [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}],
}


PAYMENT_INTENTS = "/v1/payment_intents"


def stripe_error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind}}


class StripeBehaviour:
    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.payment_intents: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def key_of(self, request: StandInRequest) -> str:
        return request.headers.get("authorization", "").removeprefix("Bearer ")

    def __call__(self, request: StandInRequest) -> Answer:
        if request.path.startswith(PAYMENT_INTENTS):
            return self.payment_intent(request)
        if request.path != "/v1/balance":
            return 404, stripe_error("Unrecognized request URL", "invalid_request_error")
        key = self.key_of(request)
        with self._lock:
            self.seen[key] += 1
            count = self.seen[key]
        if key.startswith("sk_test_good_"):
            return 200, BALANCE
        if key.startswith("sk_test_bad_"):
            return 401, stripe_error(
                f"Invalid API Key provided: sk_test_****{key[-4:]}", "invalid_request_error"
            )
        if key.startswith("sk_test_flaky_"):
            if count <= 2:
                return 503, stripe_error("Stripe is temporarily unavailable", "api_error")
            return 200, BALANCE
        if key.startswith("sk_test_hang_"):
            return None
        if key.startswith("sk_test_stall_once_"):
            return None if count == 1 else (200, BALANCE)
        return 401, stripe_error("Invalid API Key provided", "invalid_request_error")

    def payment_intent(self, request: StandInRequest) -> Answer:
        if not self.key_of(request).startswith("sk_test_good_"):
            return 401, stripe_error("Invalid API Key provided", "invalid_request_error")
        if request.method == "POST" and request.path == PAYMENT_INTENTS:
            form = dict(parse_qsl(request.body.decode(), keep_blank_values=True))
            intent_id = f"pi_{secrets.token_hex(12)}"
            intent = {
                "id": intent_id,
                "object": "payment_intent",
                "amount": int(form.get("amount", "0")),
                "amount_received": 0,
                "capture_method": "automatic",
                "client_secret": f"{intent_id}_secret_{secrets.token_hex(12)}",
                "created": int(time.time()),
                "currency": form.get("currency", "usd"),
                "description": form.get("description"),
                "latest_charge": None,
                "livemode": False,
                "metadata": {
                    key[len("metadata[") : -1]: value
                    for key, value in form.items()
                    if key.startswith("metadata[") and key.endswith("]")
                },
                "payment_method_types": ["card"],
                "status": "requires_payment_method",
            }
            with self._lock:
                self.payment_intents[intent_id] = intent
            return 200, intent
        intent_id = request.path.removeprefix(PAYMENT_INTENTS + "/")
        if request.method == "GET" and intent_id in self.payment_intents:
            return 200, self.payment_intents[intent_id]
        return 404, stripe_error(f"No such payment_intent: '{intent_id}'", "invalid_request_error")


def payment_intent_event(
    event_type: str, data_object: dict[str, Any], *, event_id: str | None = None
) -> dict[str, Any]:
    """A Stripe ``event`` object (stripe_fixtures3.json ``resources.event``) about
    ``data_object``, as Stripe POSTs it to a webhook endpoint."""
    return {
        "id": event_id or f"evt_{secrets.token_hex(12)}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "data": {"object": data_object},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def stripe_signature_header(
    payload: bytes, secret: str, *, timestamp: int | None = None, extra_v1: tuple[str, ...] = ()
) -> str:
    """``Stripe-Signature`` as Stripe signs a webhook (docs.stripe.com/webhooks#verify-manually):
    ``t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<payload>" keyed with the endpoint's secret>``;
    ``extra_v1`` adds more ``v1`` entries first (during a secret roll Stripe signs with each
    live secret)."""
    t = int(time.time()) if timestamp is None else timestamp
    signed = f"{t}.".encode() + payload
    mac = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return ",".join([f"t={t}", *(f"v1={v}" for v in extra_v1), f"v1={mac}"])
