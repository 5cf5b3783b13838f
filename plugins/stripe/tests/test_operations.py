"""Stripe's operations against Stripe's documented objects, faked at the transport and run
through the core's run_operation as the dispatcher runs them: what is Stripe's own.
relaykit's operation contract (refusals, throttling, transport, bodies, secrets) runs in
test_verifier.py's ``TestStripeProvider``.

Bodies: the ``payment_intent`` and ``refund`` fixtures of shared/provider-specs/
stripe_fixtures3.json (the fields relaykit reads, verbatim), and Stripe's error object.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from relaykit import OperationOutcome, PaymentResult, RefundResult
from relaykit.testing import recording, run_handler
from relaykit_stripe import PROVIDER

SECRET = "sk_test_canary_0ps_5e6f7a8b"
CREDENTIALS = {"publishable_key": "pk_test_1", "secret_key": SECRET}

# From stripe_fixtures3.json: resources.payment_intent and resources.refund (fields read).
PAYMENT_INTENT: dict[str, Any] = {
    "id": "pi_1PgafyB7WZ01zgkWSjxsAJo3",
    "object": "payment_intent",
    "amount": 1099,
    "currency": "usd",
    "status": "requires_payment_method",
    "client_secret": "pi_1PgafyB7WZ01zgkWSjxsAJo3_secret_Dm43xiq1k0ywrRRjDoi8y1gkM",
    "livemode": False,
    "description": None,
    "metadata": {},
}
REFUND: dict[str, Any] = {
    "id": "re_1Pgc72B7WZ01zgkWqPvrRrPE",
    "object": "refund",
    "amount": 100,
    "charge": "ch_1PgafuB7WZ01zgkWXYmPNZs8",
    "currency": "usd",
    "payment_intent": None,
    "status": "succeeded",
}


def error(status: int, message: str, kind: str, code: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"message": message, "type": kind}
    if code:
        body["code"] = code
    return httpx.Response(status, json={"error": body})


def form(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def test_initiate_payment_creates_a_payment_intent() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=PAYMENT_INTENT)

    result = run_handler(
        PROVIDER,
        "initiate_payment",
        {"amount": 1099, "currency": "usd", "description": "Order 7", "metadata": {"order": "7"}},
        CREDENTIALS,
        handler=handler,
        idempotency_key="order-7",
    )
    assert result.outcome is OperationOutcome.SUCCEEDED
    assert result.result == PaymentResult(
        provider_payment_id="pi_1PgafyB7WZ01zgkWSjxsAJo3",
        provider_status="requires_payment_method",
        amount=1099,
        currency="usd",
        client_secret=PAYMENT_INTENT["client_secret"],
    )
    [request] = seen
    assert request.method == "POST" and request.url.path == "/v1/payment_intents"
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert request.headers["idempotency-key"] == "order-7"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert form(request) == {
        "amount": "1099",
        "currency": "usd",
        "description": "Order 7",
        "metadata[order]": "7",
        "metadata[relaykit.operation_id]": "op_test",
    }


def test_verify_payment_reads_the_payment_intent() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={**PAYMENT_INTENT, "status": "succeeded"})

    result = run_handler(
        PROVIDER,
        "verify_payment",
        {"payment_id": "pi_1PgafyB7WZ01zgkWSjxsAJo3"},
        CREDENTIALS,
        handler=handler,
    )
    assert result.outcome is OperationOutcome.SUCCEEDED
    assert result.result.provider_status == "succeeded"
    assert seen[0].method == "GET"
    assert seen[0].url.path == "/v1/payment_intents/pi_1PgafyB7WZ01zgkWSjxsAJo3"
    assert "idempotency-key" not in seen[0].headers  # reads carry none


@pytest.mark.parametrize(
    ("payment_id", "field"),
    [("pi_123", "payment_intent"), ("ch_1PgafuB7WZ01zgkWXYmPNZs8", "charge")],
)
def test_process_refund(payment_id: str, field: str) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=REFUND)

    result = run_handler(
        PROVIDER,
        "process_refund",
        {"payment_id": payment_id, "amount": 100},
        CREDENTIALS,
        handler=handler,
    )
    assert result.outcome is OperationOutcome.SUCCEEDED
    assert result.result == RefundResult(
        provider_refund_id="re_1Pgc72B7WZ01zgkWqPvrRrPE",
        provider_status="succeeded",
        payment_id="ch_1PgafuB7WZ01zgkWXYmPNZs8",
        amount=100,
    )
    assert seen[0].url.path == "/v1/refunds"
    assert form(seen[0]) == {field: payment_id, "amount": "100"}
    assert seen[0].headers["idempotency-key"] == "op_test_key"


@pytest.mark.parametrize(
    ("response", "outcome", "code"),
    [
        (
            error(402, "Your card was declined.", "card_error", "card_declined"),
            OperationOutcome.REJECTED,
            "card_declined",
        ),
        (
            error(
                404, "No such payment_intent: 'pi_x'", "invalid_request_error", "resource_missing"
            ),
            OperationOutcome.REJECTED,
            "resource_missing",
        ),
        (
            error(429, "Too many requests", "rate_limit_error", "rate_limit"),
            OperationOutcome.TRANSIENT,
            "rate_limit",
        ),
        (error(500, "An unknown error occurred", "api_error"), OperationOutcome.TRANSIENT, None),
    ],
)
def test_stripes_error_codes_are_kept(
    response: httpx.Response, outcome: OperationOutcome, code: str | None
) -> None:
    result = run_handler(
        PROVIDER,
        "initiate_payment",
        {"amount": 500, "currency": "eur"},
        CREDENTIALS,
        handler=lambda request: response,
    )
    assert result.outcome is outcome, result
    assert result.provider_code == code


@pytest.mark.parametrize(
    ("payment_id", "raw_path"),
    [
        ("pi_1/../refunds", b"/v1/payment_intents/pi_1%2F..%2Frefunds"),
        ("pi_1?expand[]=customer", b"/v1/payment_intents/pi_1%3Fexpand%5B%5D%3Dcustomer"),
    ],
)
def test_the_payment_id_stays_in_its_path_segment(payment_id: str, raw_path: bytes) -> None:
    handler, seen = recording(lambda request: error(404, "No such payment_intent", "x"))
    run_handler(
        PROVIDER, "verify_payment", {"payment_id": payment_id}, CREDENTIALS, handler=handler
    )
    assert [r.url.raw_path for r in seen] == [raw_path]


@pytest.mark.parametrize("payment_id", [".", ".."])
def test_a_dot_segment_payment_id_is_rejected_without_a_request(payment_id: str) -> None:
    handler, seen = recording(lambda request: httpx.Response(200, json=PAYMENT_INTENT))
    result = run_handler(
        PROVIDER, "verify_payment", {"payment_id": payment_id}, CREDENTIALS, handler=handler
    )
    assert seen == []
    assert result.outcome is OperationOutcome.REJECTED
