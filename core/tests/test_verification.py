"""The verification helpers every provider plugin builds on."""

from __future__ import annotations

import email.utils
from typing import Any

import httpx
import pytest

from relaykit.testing import run_verification
from relaykit.verification import (
    Outcome,
    VerificationResult,
    classify_response,
    parse_retry_after,
    redact,
    resolve_api_base,
)

from .providers_for_tests import make_provider


def message_of(body: Any) -> str | None:
    return body.get("message") if isinstance(body, dict) else None


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (400, Outcome.REJECTED),
        (401, Outcome.REJECTED),
        (403, Outcome.REJECTED),
        (404, Outcome.REJECTED),
        (408, Outcome.TRANSIENT),
        (429, Outcome.TRANSIENT),
        (500, Outcome.TRANSIENT),
        (503, Outcome.TRANSIENT),
        (302, Outcome.TRANSIENT),
    ],
)
def test_classify_by_status(status: int, outcome: Outcome) -> None:
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


def test_retry_after_forms() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after(date, now=1_000_000) == pytest.approx(30.0)


def test_redact_masks_every_value_longest_first() -> None:
    secrets = {"a": "abcd1234", "b": "abcd", "short": "x", "none": None}
    assert redact("k=abcd1234 and abcd and x", secrets) == "k=[redacted] and [redacted] and x"


def test_api_base_override_from_environment() -> None:
    provider = make_provider()
    assert resolve_api_base(provider, {}) == "https://api.acme.example"
    env = {"RELAYKIT_ACME_API_BASE": "http://127.0.0.1:9000/"}
    assert resolve_api_base(provider, env) == "http://127.0.0.1:9000"


CANARY = "canary-secret-5b1e7c0d"


def test_verifier_exception_never_carries_its_message() -> None:
    async def leaky(credentials: Any, ctx: Any) -> VerificationResult:
        raise ValueError(f"could not use key {credentials['api_key']}")

    result = run_verification(make_provider(verify=leaky), {"api_key": CANARY, "account": "a"})
    assert result.outcome is Outcome.TRANSIENT
    assert result.message == "the acme verifier failed (ValueError)"


def test_verifier_returning_garbage_is_transient() -> None:
    async def garbage(credentials: Any, ctx: Any) -> Any:
        return {"ok": True}

    result = run_verification(make_provider(verify=garbage), {"api_key": CANARY, "account": "a"})
    assert result.outcome is Outcome.TRANSIENT
    assert "returned dict" in result.message


def test_result_messages_are_redacted_and_bounded() -> None:
    async def chatty(credentials: Any, ctx: Any) -> VerificationResult:
        return VerificationResult.rejected(f"bad key {credentials['api_key']} " + "x" * 2000)

    result = run_verification(make_provider(verify=chatty), {"api_key": CANARY, "account": "a"})
    assert result.outcome is Outcome.REJECTED
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
    assert result.outcome is Outcome.ACCEPTED
    assert seen == ["http://127.0.0.1:1/base/v1/me"]
