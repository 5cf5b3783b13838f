"""Twilio's send_sms and send_whatsapp against Twilio's documented answers, faked at the
transport and run through the core's :func:`relaykit.operations.run_operation`: what is
Twilio's own. relaykit's operation contract (refusals, throttling, transport, bodies,
secrets) runs in test_verifier.py's ``TestTwilioProvider``.

The 201 body is the ``create`` example of Twilio's own OpenAPI description
(shared/provider-specs/twilio_api_v2010.json, ``POST
/2010-04-01/Accounts/{AccountSid}/Messages.json``); test_the_fixtures_match_twilios_openapi
checks the copy and the request fields when the file is reachable. Error bodies follow
Twilio's error object with codes of Twilio's error dictionary: 21211 (invalid 'To' number),
20003 (bad credentials), 20429 (rate limited), 20500 (internal error).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from relaykit import MessageResult, OperationOutcome, OperationResult
from relaykit.capabilities import SEND_SMS, SEND_WHATSAPP
from relaykit.testing import run_recorded
from relaykit_twilio import PROVIDER
from relaykit_twilio.verifier import twilio_error_code

TWILIO_SPEC = (
    Path(__file__).resolve().parents[3].parent
    / "shared"
    / "provider-specs"
    / "twilio_api_v2010.json"
)
MESSAGES = "/2010-04-01/Accounts/{AccountSid}/Messages.json"

ACCOUNT_SID = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
AUTH_TOKEN = "auth_token_canary_9a8b7c6d5e"
FROM_NUMBER = "+15550100000"
TO_NUMBER = "+14155552345"
CREDENTIALS = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from_number": FROM_NUMBER}

# Verbatim from twilio_api_v2010.json, paths[MESSAGES].post.responses["201"]
# .content["application/json"].examples.create.value.
MESSAGE_FIXTURE: dict[str, Any] = {
    "account_sid": "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "api_version": "2010-04-01",
    "body": "Hello! \U0001f44d",
    "date_created": "Thu, 24 Aug 2023 05:01:45 +0000",
    "date_sent": "Thu, 24 Aug 2023 05:01:45 +0000",
    "date_updated": "Thu, 24 Aug 2023 05:01:45 +0000",
    "direction": "outbound-api",
    "error_code": None,
    "error_message": None,
    "from": "+14155552345",
    "num_media": "0",
    "num_segments": "1",
    "price": None,
    "price_unit": None,
    "messaging_service_sid": "MGaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "sid": "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "status": "queued",
    "subresource_uris": {
        "media": "/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Messages/SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Media.json"
    },
    "to": "+14155552345",
    "uri": "/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Messages/SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.json",
}

INVALID_TO = "The 'To' number +15550100001 is not a valid phone number."

Respond = Callable[[httpx.Request], httpx.Response]


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


def created(request: httpx.Request) -> httpx.Response:
    return httpx.Response(201, json=MESSAGE_FIXTURE)


def send(
    capability: str, respond: Respond, body: str = "Hello! \U0001f44d"
) -> tuple[OperationResult, list[httpx.Request]]:
    """Run the handler for ``capability`` as the dispatcher does; the result and the requests."""
    return run_recorded(PROVIDER, capability, {"to": TO_NUMBER, "body": body}, CREDENTIALS, respond)


def form(request: httpx.Request) -> dict[str, list[str]]:
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    return parse_qs(request.content.decode(), keep_blank_values=True, strict_parsing=True)


# -- success -----------------------------------------------------------------------------------


def test_send_sms() -> None:
    result, seen = send(SEND_SMS, created, body="Hi & bye = 100% \U0001f44d")
    assert result.outcome is OperationOutcome.SUCCEEDED, result
    assert result.status_code == 201
    assert result.result == MessageResult(
        provider_message_id="SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        provider_status="queued",
        to=TO_NUMBER,
        from_=FROM_NUMBER,
    )
    assert len(seen) == 1
    assert form(seen[0]) == {
        "To": [TO_NUMBER],
        "From": [FROM_NUMBER],
        "Body": ["Hi & bye = 100% \U0001f44d"],
    }


def test_send_whatsapp_uses_twilios_channel_addresses() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        # Twilio echoes the channel addresses it was given.
        return httpx.Response(
            201,
            json={
                **MESSAGE_FIXTURE,
                "to": f"whatsapp:{TO_NUMBER}",
                "from": f"whatsapp:{FROM_NUMBER}",
            },
        )

    result, seen = send(SEND_WHATSAPP, respond, body="Hello")
    assert result.outcome is OperationOutcome.SUCCEEDED, result
    assert len(seen) == 1
    assert form(seen[0]) == {
        "To": [f"whatsapp:{TO_NUMBER}"],
        "From": [f"whatsapp:{FROM_NUMBER}"],
        "Body": ["Hello"],
    }
    # The result holds the plain E.164 numbers, like every send_whatsapp provider's.
    assert result.result == MessageResult(
        provider_message_id="SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        provider_status="queued",
        to=TO_NUMBER,
        from_=FROM_NUMBER,
    )


WEBHOOK_URL = "https://relay.example.com/webhooks/int_0123456789abcdef"


@pytest.mark.parametrize("capability", [SEND_SMS, SEND_WHATSAPP])
def test_with_a_public_url_the_send_carries_the_status_callback(capability: str) -> None:
    result, seen = run_recorded(
        PROVIDER,
        capability,
        {"to": TO_NUMBER, "body": "Hello"},
        CREDENTIALS,
        created,
        webhook_url=WEBHOOK_URL,
    )
    assert result.outcome is OperationOutcome.SUCCEEDED, result
    channel = "whatsapp:" if capability == SEND_WHATSAPP else ""
    assert form(seen[0]) == {
        "To": [channel + TO_NUMBER],
        "From": [channel + FROM_NUMBER],
        "Body": ["Hello"],
        "StatusCallback": [WEBHOOK_URL],
    }


def test_without_a_public_url_no_status_callback_is_sent() -> None:
    _, seen = send(SEND_SMS, created)
    assert "StatusCallback" not in form(seen[0])


def test_the_reported_status_is_twilios() -> None:
    result, _ = send(
        SEND_SMS,
        lambda request: httpx.Response(201, json={**MESSAGE_FIXTURE, "status": "accepted"}),
    )
    assert isinstance(result.result, MessageResult)
    assert result.result.provider_status == "accepted"


# -- Twilio's refusals -------------------------------------------------------------------------


def test_an_invalid_number_is_rejected_with_twilios_message_and_code() -> None:
    result, _ = send(SEND_SMS, lambda request: twilio_error(400, 21211, INVALID_TO))
    assert result.outcome is OperationOutcome.REJECTED, result
    assert result.status_code == 400
    assert result.provider_code == "21211"
    assert result.message == f"{INVALID_TO} (Twilio error 21211)"


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (401, 20003, "Authenticate"),
        (403, 20008, "Resource not accessible with Test Account Credentials"),
        (429, 20429, "Too Many Requests"),
        (503, 20500, "Internal Server Error"),
    ],
)
def test_twilios_error_code_is_kept(status: int, code: int, message: str) -> None:
    result, _ = send(SEND_SMS, lambda request: twilio_error(status, code, message))
    assert result.provider_code == str(code)
    assert result.message == f"{message} (Twilio error {code})"


# -- answers that are not a message resource ---------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(201, json=[MESSAGE_FIXTURE]),
        httpx.Response(201, json={**MESSAGE_FIXTURE, "sid": None}),
        httpx.Response(201, json={**MESSAGE_FIXTURE, "sid": ""}),
        httpx.Response(201, json={**MESSAGE_FIXTURE, "sid": 12}),
        httpx.Response(201, json={k: v for k, v in MESSAGE_FIXTURE.items() if k != "status"}),
        httpx.Response(201, json={**MESSAGE_FIXTURE, "status": None}),
        httpx.Response(200, json={"code": 20003, "message": "Authenticate"}),
    ],
)
def test_a_2xx_without_a_message_resource_is_unknown(response: httpx.Response) -> None:
    # The message may have been sent: no fallback to another provider, hence unknown.
    result, _ = send(SEND_SMS, lambda request: response)
    assert result.outcome is OperationOutcome.UNKNOWN, result
    assert result.status_code == response.status_code
    assert result.result is None


# -- helpers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"code": 21211, "message": INVALID_TO}, "21211"),
        ({"code": True, "message": INVALID_TO}, None),
        ({"code": "21211", "message": INVALID_TO}, None),
        ({"message": INVALID_TO}, None),
        ([21211], None),
        (None, None),
    ],
)
def test_twilio_error_code(body: Any, code: str | None) -> None:
    assert twilio_error_code(body) == code


# -- Twilio's OpenAPI --------------------------------------------------------------------------


def test_the_fixtures_match_twilios_openapi() -> None:
    if not TWILIO_SPEC.is_file():
        pytest.skip(f"{TWILIO_SPEC} is not beside this checkout")
    spec = json.loads(TWILIO_SPEC.read_text(encoding="utf-8"))
    create = spec["paths"][MESSAGES]["post"]
    assert create["security"] == [{"accountSid_authToken": []}]
    assert spec["components"]["securitySchemes"]["accountSid_authToken"] == {
        "scheme": "basic",
        "type": "http",
    }
    # The request: form-encoded, and the three fields sent are CreateMessageRequest's.
    request_schema = create["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    assert request_schema["title"] == "CreateMessageRequest"
    assert {"To", "From", "Body", "StatusCallback"} <= set(request_schema["properties"])
    assert request_schema["properties"]["StatusCallback"]["format"] == "uri"
    assert "whatsapp:" in request_schema["properties"]["To"]["description"]
    # The answer: 201 with the message resource; the fixture is Twilio's example.
    created_response = create["responses"]["201"]["content"]["application/json"]
    assert created_response["schema"] == {"$ref": "#/components/schemas/api.v2010.account.message"}
    assert created_response["examples"]["create"]["value"] == MESSAGE_FIXTURE
    message = spec["components"]["schemas"]["api.v2010.account.message"]["properties"]
    assert message["sid"]["type"] == "string"
    assert message["status"] == {"$ref": "#/components/schemas/message_enum_status"}
    assert "queued" in spec["components"]["schemas"]["message_enum_status"]["enum"]
