"""Verification: the classify helper every provider's verifier builds on, and the runner."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from relaykit.testing import run_verification
from relaykit.verification import VerificationOutcome, VerificationResult, classify_response

from .providers_for_tests import make_provider


def message_of(body: Any) -> str | None:
    return body.get("message") if isinstance(body, dict) else None


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (400, VerificationOutcome.REJECTED),
        (401, VerificationOutcome.REJECTED),
        (403, VerificationOutcome.REJECTED),
        (404, VerificationOutcome.REJECTED),
        (408, VerificationOutcome.TRANSIENT),
        (429, VerificationOutcome.TRANSIENT),
        (500, VerificationOutcome.TRANSIENT),
        (503, VerificationOutcome.TRANSIENT),
        (302, VerificationOutcome.TRANSIENT),
    ],
)
def test_classify_by_status(status: int, outcome: VerificationOutcome) -> None:
    result = classify_response(
        httpx.Response(status, json={"message": "m"}), error_message=message_of
    )
    assert result is not None and result.outcome is outcome and result.status_code == status


def test_a_2xx_is_left_to_the_caller() -> None:
    assert classify_response(httpx.Response(200), error_message=message_of) is None


def test_provider_message_or_status_line() -> None:
    with_message = classify_response(
        httpx.Response(401, json={"message": " Bad key "}), error_message=message_of
    )
    assert with_message is not None and with_message.message == "Bad key"
    without = classify_response(httpx.Response(401, text="<html>"), error_message=message_of)
    assert without is not None and without.message == "HTTP 401 Unauthorized"

    def explode(body: Any) -> str:
        raise KeyError("shape")

    odd = classify_response(httpx.Response(403, json=[1]), error_message=explode)
    assert odd is not None and odd.message == "HTTP 403 Forbidden"


def test_the_provider_message_is_redacted_of_the_secrets_given() -> None:
    response = httpx.Response(401, json={"message": "Bad key sk_live_0123456789 for acct_1"})
    result = classify_response(
        response, error_message=message_of, secrets=("sk_live_0123456789", "abc")
    )
    assert result is not None and result.message == "Bad key [redacted] for acct_1"
    # One string is one value, not its characters.
    alone = classify_response(response, error_message=message_of, secrets="sk_live_0123456789")
    assert alone is not None and alone.message == "Bad key [redacted] for acct_1"


CANARY = "canary-secret-5b1e7c0d"


def test_verifier_exception_never_carries_its_message() -> None:
    async def leaky(credentials: Any, ctx: Any) -> VerificationResult:
        raise ValueError(f"could not use key {credentials['api_key']}")

    result = run_verification(make_provider(verify=leaky), {"api_key": CANARY, "account": "a"})
    assert result.outcome is VerificationOutcome.TRANSIENT
    assert result.message == "the acme verifier failed (ValueError)"


def test_verifier_returning_garbage_is_transient() -> None:
    async def garbage(credentials: Any, ctx: Any) -> Any:
        return {"ok": True}

    result = run_verification(make_provider(verify=garbage), {"api_key": CANARY, "account": "a"})
    assert result.outcome is VerificationOutcome.TRANSIENT
    assert "returned dict" in result.message


def test_result_messages_are_redacted_and_bounded() -> None:
    async def chatty(credentials: Any, ctx: Any) -> VerificationResult:
        return VerificationResult.rejected(f"bad key {credentials['api_key']} " + "x" * 2000)

    result = run_verification(make_provider(verify=chatty), {"api_key": CANARY, "account": "a"})
    assert result.outcome is VerificationOutcome.REJECTED
    assert CANARY not in result.message and "[redacted]" in result.message
    assert len(result.message) == 500


def test_real_http_through_the_mock_transport_sees_base_url() -> None:
    seen: list[str] = []

    async def verify(credentials: Any, ctx: Any) -> VerificationResult:
        response = await ctx.http.get("/v1/me")
        seen.append(str(response.request.url))
        return VerificationResult.accepted()

    result = run_verification(
        make_provider(verify=verify),
        {"api_key": CANARY},
        handler=lambda request: httpx.Response(200),
        api_base="http://127.0.0.1:1/base",
    )
    assert result.outcome is VerificationOutcome.ACCEPTED
    assert seen == ["http://127.0.0.1:1/base/v1/me"]
