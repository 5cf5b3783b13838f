"""The classify helper every provider's operation handlers build on."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from relaykit import OperationOutcome, classify_operation_response


def message_of(body: Any) -> str | None:
    return body.get("message") if isinstance(body, dict) else None


def code_of(body: Any) -> str | None:
    return body.get("code") if isinstance(body, dict) else None


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (400, OperationOutcome.REJECTED),
        (401, OperationOutcome.AUTH_FAILED),
        (403, OperationOutcome.AUTH_FAILED),
        (404, OperationOutcome.REJECTED),
        (408, OperationOutcome.TRANSIENT),
        (429, OperationOutcome.TRANSIENT),
        (500, OperationOutcome.TRANSIENT),
        (503, OperationOutcome.TRANSIENT),
        (302, OperationOutcome.UNKNOWN),
    ],
)
def test_classify_by_status(status: int, outcome: OperationOutcome) -> None:
    response = httpx.Response(status, json={"message": "m", "code": "c1"})
    result = classify_operation_response(response, error_message=message_of, error_code=code_of)
    assert result is not None
    assert (result.outcome, result.status_code, result.message) == (outcome, status, "m")
    assert result.provider_code == "c1"


def test_a_2xx_is_left_to_the_caller() -> None:
    assert classify_operation_response(httpx.Response(201), error_message=message_of) is None


def test_the_status_line_stands_in_for_a_missing_message() -> None:
    response = httpx.Response(503, text="<html>down</html>", headers={"Retry-After": "7"})
    result = classify_operation_response(response, error_message=message_of)
    assert result is not None
    assert result.message == "HTTP 503 Service Unavailable"
    assert result.retry_after == 7.0


def test_the_provider_message_is_redacted_of_the_secrets_given() -> None:
    response = httpx.Response(401, json={"message": "Authenticate tok_0123456789 (abc)"})
    result = classify_operation_response(
        response, error_message=message_of, secrets={"auth_token": "tok_0123456789", "x": "abc"}
    )
    assert result is not None
    # Values shorter than four characters are left alone.
    assert result.message == "Authenticate [redacted] (abc)"


def test_a_provider_code_longer_than_any_real_one_is_cut_to_what_the_record_holds() -> None:
    from relaykit.operations import MAX_PROVIDER_CODE_LENGTH
    from relaykit.testing import run_recorded

    from .providers_for_tests import make_provider

    async def refuse(payload: Any, credentials: Any, ctx: Any) -> Any:
        response = await ctx.http.post("/messages")
        return classify_operation_response(response, error_message=message_of, error_code=code_of)

    provider = make_provider(operations={"send_sms": refuse})
    result, _ = run_recorded(
        provider,
        "send_sms",
        {"to": "+15550100001", "body": "hi"},
        {"api_key": "key-0001", "account": "a"},
        lambda request: httpx.Response(400, json={"message": "no", "code": "E" * 150}),
    )
    assert result.outcome is OperationOutcome.REJECTED
    assert result.provider_code == "E" * MAX_PROVIDER_CODE_LENGTH
