"""The Plivo verifier against Plivo's documented answers, faked at the transport.

The account body has the fields of Plivo's documented "Retrieve account details" response
(``GET /v1/Account/{auth_id}/``); the values of its free-text fields (name, address, city)
are placeholders. Error bodies follow Plivo's documented shape, ``{"api_id": …, "error":
…}``; Plivo documents the statuses (401 authentication failed, 403 forbidden, 429 rate
limited, 500 server error) but not the text of each, so only "authentication failed" is
Plivo's own words.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import msgspec
import pytest

from relaykit.testing import ProviderContractTests, run_verification
from relaykit.validation import Problems, check_credentials
from relaykit.verification import Outcome
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
    """relaykit's whole provider contract (relaykit.testing), loaded through the entry point."""

    entry_point = "plivo"
    operation_inputs = {
        "send_sms": {"to": "+14155552345", "body": "hi"},
        "send_whatsapp": {"to": "+14155552345", "body": "hi"},
    }

    def operation_response(self, capability: str, request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            202,
            json={
                "api_id": "db342550",
                "message": "message(s) queued",
                "message_uuid": ["db3ce55a-7f1d-11e1-8ea7-1231380bc196"],
            },
        )

    credentials = {
        "auth_id": AUTH_ID,
        "auth_token": AUTH_TOKEN,
        "from_number": "+15550100000",
    }
    expected_error_message = "authentication failed"

    def check_request(self, request: httpx.Request) -> None:
        assert request.method == "GET"
        # The trailing slash is part of Plivo's resource URI (see resource_uri above).
        assert request.url.raw_path == f"/v1/Account/{AUTH_ID}/".encode()
        scheme, _, encoded = request.headers["authorization"].partition(" ")
        assert scheme == "Basic"
        assert base64.b64decode(encoded).decode() == f"{AUTH_ID}:{AUTH_TOKEN}"

    def accepted_response(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=ACCOUNT_FIXTURE)

    def error_response(self, request: httpx.Request, status: int) -> httpx.Response:
        # Server errors only need their status here.
        message = ERRORS.get(status, "internal server error")
        return httpx.Response(status, json={"api_id": API_ID, "error": message})

    def expected_message(self, status: int) -> str:
        return ERRORS[status]

    def test_plain_text_401_is_rejected_with_the_status_line(self) -> None:
        result, _ = self.verify(
            lambda request: httpx.Response(
                401, text=PLAIN_TEXT_401, headers={"content-type": "text/plain"}
            )
        )
        assert result.outcome is Outcome.REJECTED
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
        assert result.outcome is Outcome.TRANSIENT
        assert result.status_code == 200

    def test_a_200_html_page_is_transient(self) -> None:
        result, _ = self.verify(
            lambda request: httpx.Response(
                200, text="<html>Sign in</html>", headers={"content-type": "text/html"}
            )
        )
        assert result.outcome is Outcome.TRANSIENT

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


def test_base_url_override_is_used() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json=ACCOUNT_FIXTURE)

    run_verification(
        PROVIDER, TestPlivoProvider.credentials, handler=handler, api_base="http://127.0.0.1:9/x/"
    )
    assert seen == [f"http://127.0.0.1:9/x/v1/Account/{AUTH_ID}/"]


@pytest.mark.parametrize(
    ("auth_id", "raw_path"),
    [
        ("MA/../Number", b"/v1/Account/MA%2F..%2FNumber/"),
        ("MA?limit=1#x", b"/v1/Account/MA%3Flimit%3D1%23x/"),
        ("...", b"/v1/Account/.../"),
    ],
)
def test_the_auth_id_stays_in_its_path_segment(auth_id: str, raw_path: bytes) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(401, json={"api_id": API_ID, "error": "authentication failed"})

    result = run_verification(
        PROVIDER, {**TestPlivoProvider.credentials, "auth_id": auth_id}, handler=handler
    )
    assert result.outcome is Outcome.REJECTED
    assert [r.url.raw_path for r in seen] == [raw_path]
    assert seen[0].url.query == b""
    # The user name of Basic auth is the Auth ID as entered, not its quoted form.
    encoded = seen[0].headers["authorization"].removeprefix("Basic ")
    assert base64.b64decode(encoded).decode() == f"{auth_id}:{AUTH_TOKEN}"


@pytest.mark.parametrize("auth_id", [".", ".."])
def test_a_dot_segment_auth_id_is_rejected_without_a_request(auth_id: str) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=ACCOUNT_FIXTURE)

    result = run_verification(
        PROVIDER, {**TestPlivoProvider.credentials, "auth_id": auth_id}, handler=handler
    )
    assert result.outcome is Outcome.REJECTED
    assert seen == []


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
    assert result.outcome is Outcome.REJECTED
    assert result.message == "HTTP 403 Forbidden"


def test_the_provider_is_described_as_the_api_shows_it() -> None:
    # The design's table of shipped providers (shared/design.md), in the contract's shape.
    assert msgspec.to_builtins(PROVIDER.describe()) == {
        "name": "plivo",
        "display_name": "Plivo",
        "category": "communication",
        "capabilities": ["send_sms", "send_whatsapp"],
        "credential_schema": {
            "auth_id": {"type": "string", "sensitive": False, "required": True},
            "auth_token": {"type": "string", "sensitive": True, "required": True},
            "from_number": {"type": "string", "sensitive": False, "required": True},
        },
    }


def test_placeholder_credentials_pass_the_schema() -> None:
    problems = Problems()
    check_credentials(
        PROVIDER,
        {
            "auth_id": "auth_id_placeholder",
            "auth_token": "auth_token_placeholder",
            "from_number": "+15550100000",
        },
        problems,
        partial=False,
    )
    assert problems.errors == {}


@pytest.mark.parametrize(
    "from_number",
    [
        "15550100000",  # no plus
        "whatsapp:+15550100000",  # a channel prefix is not part of the number
        "+05550100000",  # no country code starts with 0
        "+1555010000012345",  # longer than E.164's 15 digits
        "+\u0661\u0665\u0665\u0665\u0660\u0661\u0660\u0660",  # Arabic-Indic digits: \d matches them
    ],
)
def test_from_number_must_be_e164(from_number: str) -> None:
    problems = Problems()
    check_credentials(
        PROVIDER,
        {**TestPlivoProvider.credentials, "from_number": from_number},
        problems,
        partial=False,
    )
    assert list(problems.errors) == ["credentials.from_number"]
