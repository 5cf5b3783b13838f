"""Stripe's operations against Stripe's documented objects, faked at the transport and run
through the core's run_operation as the dispatcher runs them.

Bodies: the ``payment_intent`` and ``refund`` fixtures of shared/provider-specs/
stripe_fixtures3.json (the fields relaykit reads, verbatim), and Stripe's error object.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from relaykit.capabilities import STANDARD_CONTRACTS, PaymentResult, RefundResult
from relaykit.operations import OperationOutcome
from relaykit.providers import provider_problems
from relaykit.testing import closed_port_url, run_handler, silent_server
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


def test_the_provider_is_well_formed() -> None:
    assert provider_problems(PROVIDER, STANDARD_CONTRACTS) == []


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
        "metadata[relaykit_operation_id]": "op_test",
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
            error(401, "Invalid API Key provided: sk_test_****8a8b", "invalid_request_error"),
            OperationOutcome.AUTH_FAILED,
            None,
        ),
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
        (httpx.Response(200, json={"object": "list"}), OperationOutcome.UNKNOWN, None),
        (httpx.Response(200, text="<html>"), OperationOutcome.UNKNOWN, None),
    ],
)
def test_answers_are_classified(
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
    assert SECRET not in result.message


def test_an_echoed_secret_is_redacted() -> None:
    result = run_handler(
        PROVIDER,
        "initiate_payment",
        {"amount": 500, "currency": "eur"},
        CREDENTIALS,
        handler=lambda request: error(
            401, f"Invalid API Key provided: {SECRET}", "invalid_request_error"
        ),
    )
    assert result.outcome is OperationOutcome.AUTH_FAILED
    assert SECRET not in result.message and "[redacted]" in result.message


def test_a_refused_connection_may_fall_back_a_timeout_may_not() -> None:
    refused = run_handler(
        PROVIDER,
        "initiate_payment",
        {"amount": 500, "currency": "eur"},
        CREDENTIALS,
        api_base=closed_port_url(),
    )
    assert refused.outcome is OperationOutcome.TRANSIENT
    with silent_server() as base:
        lost = run_handler(
            PROVIDER,
            "initiate_payment",
            {"amount": 500, "currency": "eur"},
            CREDENTIALS,
            api_base=base,
            timeout=0.3,
        )
    assert lost.outcome is OperationOutcome.UNKNOWN
