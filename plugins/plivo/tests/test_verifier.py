"""The Plivo verifier against Plivo's documented answers, faked at the transport.

The account body has the fields of Plivo's documented "Retrieve account details" response
(``GET /v1/Account/{auth_id}/``); the values of its free-text fields (name, address, city)
are placeholders. Error bodies follow Plivo's documented shape, ``{"api_id": …, "error":
…}``; Plivo documents the statuses (401 authentication failed, 403 forbidden, 429 rate
limited, 500 server error) but not the text of each, so only "authentication failed" is
Plivo's own words.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from relaykit import E164_PATTERN, HEADER_SAFE_PATTERN, VerificationOutcome
from relaykit.testing import ProviderContractTests, basic_auth, run_verification
from relaykit_plivo import PROVIDER
from relaykit_plivo.verifier import plivo_error_message

AUTH_ID = "MAC0FFEE0123456789AB"
AUTH_TOKEN = "auth_token_canary_9a8b7c6d5e"
API_ID = "a1b2c3d4-0000-11ee-8000-0242ac110002"

ACCOUNT_FIXTURE: dict[str, Any] = {
    "account_type": "standard",
    "address": "1 Placeholder Street",
    "api_id": API_ID,
    "auth_id": AUTH_ID,
    "auto_recharge": False,
    "billing_mode": "prepaid",
    "cash_credits": "12.34000",
    "city": "Placeholder City",
    "name": "Placeholder Name",
    "resource_uri": f"/v1/Account/{AUTH_ID}/",
    "state": "",
    "timezone": "Asia/Kolkata",
}

ERRORS = {
    401: "authentication failed",
    403: "account is not allowed to access this resource",
    429: "too many requests",
}

# What Plivo's edge answers a bad Basic auth header with, as text/plain, at times.
PLAIN_TEXT_401 = (
    "Could not verify your access level for that URL.\nYou have to login with proper credentials"
)


class TestPlivoProvider(ProviderContractTests):
    """relaykit's whole provider contract (relaykit.testing), loaded through the entry point,
    verifier and operations; then what is particular to Plivo's verifier."""

    entry_point = "plivo"
    credentials = {
        "auth_id": AUTH_ID,
        "auth_token": AUTH_TOKEN,
        "from_number": "+15550100000",
    }
    expected_error_message = "authentication failed"
    operation_inputs = {
        "send_sms": {"to": "+14155552345", "body": "hi"},
        "send_whatsapp": {"to": "+14155552345", "body": "hi"},
    }

    def check_request(self, request: httpx.Request) -> None:
        assert request.method == "GET"
        # The trailing slash is part of Plivo's resource URI (see resource_uri above).
        assert request.url.raw_path == f"/v1/Account/{AUTH_ID}/".encode()
        assert basic_auth(request) == f"{AUTH_ID}:{AUTH_TOKEN}"

    def accepted_response(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=ACCOUNT_FIXTURE)

    def error_response(self, request: httpx.Request, status: int) -> httpx.Response:
        # Server errors only need their status here.
        message = ERRORS.get(status, "internal server error")
        return httpx.Response(status, json={"api_id": API_ID, "error": message})

    def expected_message(self, status: int) -> str:
        return ERRORS[status]

    def check_operation_request(self, capability: str, request: httpx.Request) -> None:
        # Both capabilities create a Message (test_operations.py checks the JSON body).
        assert request.method == "POST"
        assert request.url.raw_path == f"/v1/Account/{AUTH_ID}/Message/".encode()
        assert basic_auth(request) == f"{AUTH_ID}:{AUTH_TOKEN}"
        # Plivo's Message API has no idempotency key; none is made up.
        assert "idempotency-key" not in request.headers

    def operation_response(self, capability: str, request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            202,
            json={
                "api_id": "db342550",
                "message": "message(s) queued",
                "message_uuid": ["db3ce55a-7f1d-11e1-8ea7-1231380bc196"],
            },
        )

    def test_plain_text_401_is_rejected_with_the_status_line(self) -> None:
        result, _ = self.verify(
            lambda request: httpx.Response(
                401, text=PLAIN_TEXT_401, headers={"content-type": "text/plain"}
            )
        )
        assert result.outcome is VerificationOutcome.REJECTED
        assert result.status_code == 401
        assert result.message == "HTTP 401 Unauthorized"

    def test_accepted_message(self) -> None:
        result, _ = self.verify(self.accepted_response)
        assert result.message == "Plivo accepted the credentials"

    @pytest.mark.parametrize(
        "body",
        [
            [ACCOUNT_FIXTURE],
            {"api_id": API_ID},
            {**ACCOUNT_FIXTURE, "auth_id": ""},
            {**ACCOUNT_FIXTURE, "auth_id": None},
            {"api_id": API_ID, "error": "authentication failed"},
        ],
    )
    def test_a_200_that_is_not_the_account_is_transient(self, body: Any) -> None:
        result, _ = self.verify(lambda request: httpx.Response(200, json=body))
        assert result.outcome is VerificationOutcome.TRANSIENT
        assert result.status_code == 200

    def test_a_200_html_page_is_transient(self) -> None:
        result, _ = self.verify(
            lambda request: httpx.Response(
                200, text="<html>Sign in</html>", headers={"content-type": "text/html"}
            )
        )
        assert result.outcome is VerificationOutcome.TRANSIENT

    @pytest.mark.parametrize("with_auth_id", [True, False])
    def test_the_account_body_never_reaches_the_message(self, with_auth_id: bool) -> None:
        body = {
            **ACCOUNT_FIXTURE,
            "name": "name_canary_24681357",
            "address": "address_canary_97531",
        }
        if not with_auth_id:
            del body["auth_id"]  # the malformed answer must not echo the body either
        result, _ = self.verify(lambda request: httpx.Response(200, json=body))
        assert "canary" not in result.message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"api_id": API_ID, "error": "authentication failed"}, "authentication failed"),
        ({"api_id": API_ID, "message": "  not found "}, "not found"),
        ({"error": "", "message": "fallback"}, "fallback"),
        ({"error": {"to": ["invalid"]}}, None),
        ({"api_id": API_ID}, None),
        ("authentication failed", None),
        (None, None),
    ],
)
def test_plivo_error_message(body: Any, message: str | None) -> None:
    assert plivo_error_message(body) == message


def test_a_non_string_error_falls_back_to_the_status_line() -> None:
    result = run_verification(
        PROVIDER,
        TestPlivoProvider.credentials,
        handler=lambda request: httpx.Response(403, json={"error": {"auth_id": ["bad"]}}),
    )
    assert result.outcome is VerificationOutcome.REJECTED
    assert result.message == "HTTP 403 Forbidden"


def test_the_auth_id_pattern_only_keeps_it_sendable_plivo_is_the_judge() -> None:
    # A strict MA…/SA… pattern would turn Plivo's clear rejection into a bare format error;
    # the field only has to fit in the Authorization header.
    assert PROVIDER.credential_schema["auth_id"].pattern == HEADER_SAFE_PATTERN


def test_the_sender_number_is_e164_as_the_core_defines_it() -> None:
    # relaykit's own tests refuse what E164_PATTERN must refuse (non-ASCII digits among them).
    assert PROVIDER.credential_schema["from_number"].pattern == E164_PATTERN
