"""The Twilio verifier against Twilio's documented answers, faked at the transport.

The account body is the example of Twilio's own OpenAPI description
(shared/provider-specs/twilio_api_v2010.json, ``GET /2010-04-01/Accounts/{Sid}.json``,
response 200, example ``fetch``). Error bodies follow Twilio's documented error object
(``code``, ``message``, ``more_info``, ``status``) with the codes of Twilio's error
dictionary: 20003 (bad credentials), 20008 (test credentials on a live resource, answered
403 as https://www.twilio.com/docs/iam/test-credentials says), 20429 (rate limited).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from relaykit import E164_PATTERN, VerificationOutcome
from relaykit.testing import ProviderContractTests, basic_auth
from relaykit.validation import Problems, check_credentials
from relaykit_twilio import PROVIDER
from relaykit_twilio.verifier import twilio_error_message

# Verbatim from twilio_api_v2010.json, paths["/2010-04-01/Accounts/{Sid}.json"].get
# .responses["200"].content["application/json"].examples.fetch.value
# (test_the_account_fixture_is_twilios_example checks the copy when the file is reachable).
ACCOUNT_FIXTURE: dict[str, Any] = {
    "auth_token": "auth_token",
    "date_created": "Thu, 30 Jul 2015 20:00:00 +0000",
    "date_updated": "Thu, 30 Jul 2015 20:00:00 +0000",
    "friendly_name": "friendly_name",
    "owner_account_sid": "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "sid": "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "status": "active",
    "subresource_uris": {
        "available_phone_numbers": "/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/AvailablePhoneNumbers.json",
        "calls": "/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Calls.json",
        "conferences": "/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Conferences.json",
        "incoming_phone_numbers": "/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/IncomingPhoneNumbers.json",
        "notifications": "/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Notifications.json",
        "outgoing_caller_ids": "/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/OutgoingCallerIds.json",
        "recordings": "/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Recordings.json",
        "transcriptions": "/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Transcriptions.json",
        "addresses": "/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Addresses.json",
        "signing_keys": "/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/SigningKeys.json",
        "connect_apps": "/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/ConnectApps.json",
        "sip": "/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/SIP.json",
        "authorized_connect_apps": "/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/AuthorizedConnectApps.json",
        "usage": "/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Usage.json",
        "keys": "/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Keys.json",
        "applications": "/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Applications.json",
        "short_codes": "/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/SMS/ShortCodes.json",
        "queues": "/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Queues.json",
        "messages": "/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Messages.json",
        "balance": "/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Balance.json",
    },
    "type": "Full",
    "uri": "/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.json",
}

# The repository root is parents[3] of this file; shared/ sits beside it (as in CI).
TWILIO_SPEC = (
    Path(__file__).resolve().parents[3].parent
    / "shared"
    / "provider-specs"
    / "twilio_api_v2010.json"
)

ACCOUNT_SID = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"  # the SID of the example above
AUTH_TOKEN = "auth_token_canary_9a8b7c6d5e"


def twilio_error(status: int, code: int, message: str) -> httpx.Response:
    """Twilio's documented error object, as Twilio sends it."""
    return httpx.Response(
        status,
        json={
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
    )


ERRORS = {
    401: (20003, "Authenticate"),
    403: (20008, "Resource not accessible with Test Account Credentials"),
    429: (20429, "Too Many Requests"),
}


class TestTwilioProvider(ProviderContractTests):
    """relaykit's whole provider contract (relaykit.testing), loaded through the entry point,
    verifier and operations; then what is particular to Twilio's verifier."""

    entry_point = "twilio"
    credentials = {
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "from_number": "+15550100000",
    }
    expected_error_message = "Authenticate"
    operation_inputs = {
        "send_sms": {"to": "+14155552345", "body": "hi"},
        "send_whatsapp": {"to": "+14155552345", "body": "hi"},
    }

    def check_request(self, request: httpx.Request) -> None:
        assert request.method == "GET"
        assert request.url.raw_path == f"/2010-04-01/Accounts/{ACCOUNT_SID}.json".encode()
        assert basic_auth(request) == f"{ACCOUNT_SID}:{AUTH_TOKEN}"

    def accepted_response(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=ACCOUNT_FIXTURE)

    def error_response(self, request: httpx.Request, status: int) -> httpx.Response:
        # Server errors only need their status here; 20500 is Twilio's internal-error code.
        code, message = ERRORS.get(status, (20500, "Internal Server Error"))
        return twilio_error(status, code, message)

    def expected_message(self, status: int) -> str:
        code, message = ERRORS[status]
        return f"{message} (Twilio error {code})"

    def check_operation_request(self, capability: str, request: httpx.Request) -> None:
        # Both capabilities create a Message resource (test_operations.py checks the form).
        assert request.method == "POST"
        assert request.url.raw_path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json".encode()
        assert basic_auth(request) == f"{ACCOUNT_SID}:{AUTH_TOKEN}"
        # Twilio's Messages resource has no idempotency key; none is made up.
        assert "idempotency-key" not in request.headers

    def operation_response(self, capability: str, request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            201,
            json={
                "sid": "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "status": "queued",
                "to": "+14155552345",
                "from": "+15550100000",
                "body": "hi",
            },
        )

    def test_test_credentials_are_rejected(self) -> None:
        result, _ = self.verify(lambda request: self.error_response(request, 403))
        assert result.outcome is VerificationOutcome.REJECTED
        assert result.message == (
            "Resource not accessible with Test Account Credentials (Twilio error 20008)"
        )

    @pytest.mark.parametrize("status", ["suspended", "closed"])
    def test_suspended_or_closed_account_is_rejected(self, status: str) -> None:
        result, _ = self.verify(
            lambda request: httpx.Response(200, json={**ACCOUNT_FIXTURE, "status": status})
        )
        assert result.outcome is VerificationOutcome.REJECTED
        assert result.message.startswith(f"The Twilio account is {status}")
        assert result.status_code == 200

    def test_full_account_is_reported(self) -> None:
        result, _ = self.verify(self.accepted_response)
        assert result.message == "Twilio accepted the credentials (full account)"

    def test_trial_account_is_reported(self) -> None:
        result, _ = self.verify(
            lambda request: httpx.Response(200, json={**ACCOUNT_FIXTURE, "type": "Trial"})
        )
        assert result.outcome is VerificationOutcome.ACCEPTED
        assert "trial account" in result.message

    @pytest.mark.parametrize("status", ["active", "suspended", "closed", "frozen"])
    def test_the_account_body_never_reaches_the_message(self, status: str) -> None:
        # The account resource returns its own auth_token; a different value than the
        # credentials', so that redaction by the core cannot be what hides it.
        body = {
            **ACCOUNT_FIXTURE,
            "status": status,
            "auth_token": "body_token_canary_13572468",
            "friendly_name": "friendly_name_canary@example.com",
        }
        result, _ = self.verify(lambda request: httpx.Response(200, json=body))
        assert "body_token_canary" not in result.message
        assert "friendly_name_canary" not in result.message
        if status == "frozen":
            assert "frozen" not in result.message

    @pytest.mark.parametrize(
        "body",
        [
            [ACCOUNT_FIXTURE],
            {"sid": ACCOUNT_SID},
            {"status": "active"},
            {**ACCOUNT_FIXTURE, "sid": ""},
            {**ACCOUNT_FIXTURE, "sid": None},
            {**ACCOUNT_FIXTURE, "status": None},
            {"code": 20003, "message": "Authenticate"},
        ],
    )
    def test_a_200_that_is_not_an_account_is_transient(self, body: Any) -> None:
        result, _ = self.verify(lambda request: httpx.Response(200, json=body))
        assert result.outcome is VerificationOutcome.TRANSIENT
        assert result.status_code == 200

    def test_an_unknown_account_status_is_transient(self) -> None:
        result, _ = self.verify(
            lambda request: httpx.Response(200, json={**ACCOUNT_FIXTURE, "status": "frozen"})
        )
        assert result.outcome is VerificationOutcome.TRANSIENT


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"code": 20003, "message": "Authenticate"}, "Authenticate (Twilio error 20003)"),
        ({"message": " Authenticate "}, "Authenticate"),
        ({"code": True, "message": "Authenticate"}, "Authenticate"),
        ({"code": "20003", "message": "Authenticate"}, "Authenticate"),
        ({"code": 20003, "message": ""}, None),
        ({"code": 20003, "message": {"text": "x"}}, None),
        (["Authenticate"], None),
        (None, None),
    ],
)
def test_twilio_error_message(body: Any, message: str | None) -> None:
    assert twilio_error_message(body) == message


def test_the_account_fixture_is_twilios_example() -> None:
    if not TWILIO_SPEC.is_file():
        pytest.skip(f"{TWILIO_SPEC} is not beside this checkout")
    spec = json.loads(TWILIO_SPEC.read_text(encoding="utf-8"))
    fetch = spec["paths"]["/2010-04-01/Accounts/{Sid}.json"]["get"]
    example = fetch["responses"]["200"]["content"]["application/json"]["examples"]["fetch"]
    assert example["value"] == ACCOUNT_FIXTURE
    # The statuses the verifier tells apart are exactly the spec's account_enum_status.
    statuses = spec["components"]["schemas"]["account_enum_status"]["enum"]
    assert sorted(statuses) == ["active", "closed", "suspended"]


def test_the_contracts_example_credentials_pass_the_schema() -> None:
    # shared/spec/managing-integrations.md, Scenario 3, "Configure Twilio".
    problems = Problems()
    check_credentials(
        PROVIDER,
        {
            "account_sid": "account_sid_placeholder",
            "auth_token": "auth_token_placeholder",
            "from_number": "+15550100000",
        },
        problems,
        partial=False,
    )
    assert problems.errors == {}


def test_the_sender_number_is_e164_as_the_core_defines_it() -> None:
    # relaykit's own tests refuse what E164_PATTERN must refuse (non-ASCII digits among them).
    assert PROVIDER.credential_schema["from_number"].pattern == E164_PATTERN
