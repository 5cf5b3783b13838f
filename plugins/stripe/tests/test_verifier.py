"""The Stripe verifier against Stripe's documented answers, faked at the transport.

The balance body is Stripe's own fixture (shared/provider-specs/stripe_fixtures3.json,
``resources.balance``); error bodies follow Stripe's documented error object.
"""

from __future__ import annotations

from typing import Any

import httpx

from relaykit import VerificationOutcome
from relaykit.testing import ProviderContractTests, run_verification
from relaykit_stripe import PROVIDER

# From stripe_fixtures3.json, resources.balance.
BALANCE_FIXTURE: dict[str, Any] = {
    "available": [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}],
    "connect_reserved": [{"amount": 0, "currency": "usd"}],
    "livemode": False,
    "object": "balance",
    "pending": [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}],
}

SECRET = "sk_test_canary_5f1c0ffee0ddba11"
ERROR_MESSAGES = {
    401: "Invalid API Key provided: sk_test_****ba11",
    403: (
        "The provided key 'rk_test_****ba11' does not have the required permissions "
        "for this endpoint."
    ),
}


class TestStripeProvider(ProviderContractTests):
    """relaykit's whole provider contract (relaykit.testing), loaded through the entry point."""

    entry_point = "stripe"
    operation_inputs = {
        "initiate_payment": {"amount": 1099, "currency": "usd"},
        "process_refund": {"payment_id": "pi_1PgafyB7WZ01zgkWSjxsAJo3", "amount": 100},
        "verify_payment": {"payment_id": "pi_1PgafyB7WZ01zgkWSjxsAJo3"},
    }

    def operation_response(self, capability: str, request: httpx.Request) -> httpx.Response:
        if capability == "process_refund":
            return httpx.Response(
                200,
                json={
                    "id": "re_1",
                    "object": "refund",
                    "amount": 100,
                    "status": "succeeded",
                    "payment_intent": "pi_1PgafyB7WZ01zgkWSjxsAJo3",
                    "charge": None,
                },
            )
        return httpx.Response(
            200,
            json={
                "id": "pi_1PgafyB7WZ01zgkWSjxsAJo3",
                "object": "payment_intent",
                "amount": 1099,
                "currency": "usd",
                "status": "requires_payment_method",
            },
        )

    credentials = {
        "publishable_key": "pk_test_canary_public",
        "secret_key": SECRET,
        "webhook_secret": "whsec_canary_0123456789",
    }
    expected_error_message = "Invalid API Key provided"

    def check_request(self, request: httpx.Request) -> None:
        assert request.method == "GET"
        assert request.url.path == "/v1/balance"
        assert request.headers["authorization"] == f"Bearer {SECRET}"

    def accepted_response(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=BALANCE_FIXTURE)

    def error_response(self, request: httpx.Request, status: int) -> httpx.Response:
        message = ERROR_MESSAGES.get(status, "Invalid API Key provided: sk_test_****ba11")
        kind = "invalid_request_error" if status < 500 else "api_error"
        if status == 429:
            message, kind = "Too many requests", "rate_limit_error"
        return httpx.Response(status, json={"error": {"message": message, "type": kind}})

    def expected_message(self, status: int) -> str:
        return ERROR_MESSAGES[status]

    def test_restricted_key_without_balance_permission_is_rejected(self) -> None:
        result, _ = self.verify(lambda request: self.error_response(request, 403))
        assert result.outcome is VerificationOutcome.REJECTED
        assert "does not have the required permissions" in result.message


def test_a_200_that_is_not_a_balance_is_not_accepted() -> None:
    result = run_verification(
        PROVIDER,
        TestStripeProvider.credentials,
        handler=lambda request: httpx.Response(200, json={"object": "list", "data": []}),
    )
    assert result.outcome is VerificationOutcome.TRANSIENT


def test_live_mode_is_reported() -> None:
    result = run_verification(
        PROVIDER,
        TestStripeProvider.credentials,
        handler=lambda request: httpx.Response(200, json={**BALANCE_FIXTURE, "livemode": True}),
    )
    assert result.outcome is VerificationOutcome.ACCEPTED
    assert "live mode" in result.message
