"""Twilio's send_sms and send_whatsapp against Twilio's documented answers, faked at the
transport and run through the core's :func:`relaykit.operations.run_operation`.

The 201 body is the ``create`` example of Twilio's own OpenAPI description
(shared/provider-specs/twilio_api_v2010.json, ``POST
/2010-04-01/Accounts/{AccountSid}/Messages.json``); test_the_fixtures_match_twilios_openapi
checks the copy and the request fields when the file is reachable. Error bodies follow
Twilio's error object with codes of Twilio's error dictionary: 21211 (invalid 'To' number),
20003 (bad credentials), 20429 (rate limited), 20500 (internal error).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from relaykit.capabilities import (
    SEND_SMS,
    SEND_WHATSAPP,
    STANDARD_CONTRACTS,
    MessageResult,
)
from relaykit.operations import OperationOutcome, OperationResult
from relaykit.providers import provider_problems
from relaykit.testing import closed_port_url, run_handler, silent_server
from relaykit_twilio import PROVIDER
from relaykit_twilio.operations import messages_path
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
SECRETS = {"auth_token": AUTH_TOKEN}  # what the dispatcher hands run_operation: the sensitive ones

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
    capability: str,
    respond: Respond | None = None,
    *,
    to: str = TO_NUMBER,
    body: str = "Hello! \U0001f44d",
    from_: str | None = None,
    credentials: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
    timeout: float = 5.0,
    secrets: dict[str, Any] | None = None,
) -> tuple[OperationResult, list[httpx.Request]]:
    """Run the provider's handler for ``capability`` the way the dispatcher does (the core's
    :func:`relaykit.testing.run_handler`), recording the requests it sends."""
    raw: dict[str, Any] = {"to": to, "body": body}
    if from_ is not None:
        raw["from"] = from_
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        assert respond is not None
        return respond(request)

    result = run_handler(
        PROVIDER,
        capability,
        raw,
        credentials if credentials is not None else CREDENTIALS,
        handler=handler if respond is not None else None,
        api_base=(environ or {}).get("RELAYKIT_TWILIO_API_BASE"),
        timeout=timeout,
        idempotency_key="op1",
        operation_id="op1",
        secrets=SECRETS if secrets is None else secrets,
    )
    return result, seen


def form(request: httpx.Request) -> dict[str, list[str]]:
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    return parse_qs(request.content.decode(), keep_blank_values=True, strict_parsing=True)


def basic_auth(request: httpx.Request) -> str:
    scheme, _, encoded = request.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    return base64.b64decode(encoded).decode()


def assert_message_create(request: httpx.Request) -> None:
    assert request.method == "POST"
    assert request.url.host == "api.twilio.com"
    assert request.url.raw_path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json".encode()
    assert request.url.query == b""
    assert basic_auth(request) == f"{ACCOUNT_SID}:{AUTH_TOKEN}"
    # Twilio's Messages resource has no idempotency key; none is made up.
    assert "idempotency-key" not in request.headers


# -- the provider record -----------------------------------------------------------------------


def test_the_provider_is_well_formed_so_the_catalog_loads_it() -> None:
    assert provider_problems(PROVIDER, STANDARD_CONTRACTS) == []
    assert set(PROVIDER.operations) == {SEND_SMS, SEND_WHATSAPP}


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
    assert_message_create(seen[0])
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
    assert_message_create(seen[0])
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


@pytest.mark.parametrize(("capability", "prefix"), [(SEND_SMS, ""), (SEND_WHATSAPP, "whatsapp:")])
def test_from_overrides_the_integrations_number(capability: str, prefix: str) -> None:
    result, seen = send(capability, created, from_="+15550100099")
    assert result.outcome is OperationOutcome.SUCCEEDED, result
    assert form(seen[0])["From"] == [f"{prefix}+15550100099"]
    assert isinstance(result.result, MessageResult)
    assert result.result.from_ == "+15550100099"


def test_without_from_the_integrations_number_is_the_sender() -> None:
    result, seen = send(
        SEND_SMS, created, credentials={**CREDENTIALS, "from_number": "+447700900123"}
    )
    assert form(seen[0])["From"] == ["+447700900123"]
    assert isinstance(result.result, MessageResult)
    assert result.result.from_ == "+447700900123"


def test_the_reported_status_is_twilios() -> None:
    result, _ = send(
        SEND_SMS,
        lambda request: httpx.Response(201, json={**MESSAGE_FIXTURE, "status": "accepted"}),
    )
    assert isinstance(result.result, MessageResult)
    assert result.result.provider_status == "accepted"


def test_the_api_base_override_is_used() -> None:
    seen: list[str] = []

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return created(request)

    result, _ = send(
        SEND_SMS, respond, environ={"RELAYKIT_TWILIO_API_BASE": "http://127.0.0.1:9/x/"}
    )
    assert result.outcome is OperationOutcome.SUCCEEDED
    assert seen == [f"http://127.0.0.1:9/x/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"]


# -- Twilio's refusals -------------------------------------------------------------------------


@pytest.mark.parametrize("capability", [SEND_SMS, SEND_WHATSAPP])
def test_bad_credentials_are_auth_failed(capability: str) -> None:
    result, _ = send(capability, lambda request: twilio_error(401, 20003, "Authenticate"))
    assert result.outcome is OperationOutcome.AUTH_FAILED, result
    assert result.status_code == 401
    assert result.provider_code == "20003"
    assert result.message == "Authenticate (Twilio error 20003)"


def test_forbidden_is_auth_failed() -> None:
    result, _ = send(
        SEND_SMS,
        lambda request: twilio_error(
            403, 20008, "Resource not accessible with Test Account Credentials"
        ),
    )
    assert result.outcome is OperationOutcome.AUTH_FAILED
    assert result.status_code == 403


def test_an_invalid_number_is_rejected_with_twilios_message_and_code() -> None:
    result, _ = send(SEND_SMS, lambda request: twilio_error(400, 21211, INVALID_TO))
    assert result.outcome is OperationOutcome.REJECTED, result
    assert result.status_code == 400
    assert result.provider_code == "21211"
    assert result.message == f"{INVALID_TO} (Twilio error 21211)"


def test_a_rejection_without_json_keeps_the_status_line() -> None:
    result, _ = send(SEND_SMS, lambda request: httpx.Response(404, text="Not Found"))
    assert result.outcome is OperationOutcome.REJECTED
    assert result.message == "HTTP 404 Not Found"
    assert result.provider_code is None


def test_rate_limited_is_transient_with_retry_after() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        response = twilio_error(429, 20429, "Too Many Requests")
        response.headers["Retry-After"] = "7"
        return response

    result, _ = send(SEND_SMS, respond)
    assert result.outcome is OperationOutcome.TRANSIENT, result
    assert result.status_code == 429
    assert result.provider_code == "20429"
    assert result.retry_after == 7.0


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(status: int) -> None:
    result, _ = send(SEND_SMS, lambda request: twilio_error(status, 20500, "Internal Server Error"))
    assert result.outcome is OperationOutcome.TRANSIENT, result
    assert result.status_code == status


def test_a_503_html_page_is_transient() -> None:
    result, _ = send(
        SEND_WHATSAPP,
        lambda request: httpx.Response(
            503, text="<html>Service Unavailable</html>", headers={"content-type": "text/html"}
        ),
    )
    assert result.outcome is OperationOutcome.TRANSIENT
    assert result.message == "HTTP 503 Service Unavailable"


# -- answers that are not a message resource ---------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(201, text="{not json"),
        httpx.Response(201, text="<html>ok</html>", headers={"content-type": "text/html"}),
        httpx.Response(201, json=[MESSAGE_FIXTURE]),
        httpx.Response(201, json={**MESSAGE_FIXTURE, "sid": None}),
        httpx.Response(201, json={**MESSAGE_FIXTURE, "sid": ""}),
        httpx.Response(201, json={**MESSAGE_FIXTURE, "sid": 12}),
        httpx.Response(201, json={k: v for k, v in MESSAGE_FIXTURE.items() if k != "status"}),
        httpx.Response(201, json={**MESSAGE_FIXTURE, "status": None}),
        httpx.Response(200, json={"code": 20003, "message": "Authenticate"}),
        httpx.Response(204),
    ],
)
def test_a_2xx_without_a_message_resource_is_unknown(response: httpx.Response) -> None:
    # The message may have been sent: no fallback to another provider, hence unknown.
    result, _ = send(SEND_SMS, lambda request: response)
    assert result.outcome is OperationOutcome.UNKNOWN, result
    assert result.status_code == response.status_code
    assert result.result is None


def test_a_malformed_2xx_body_is_not_repeated() -> None:
    body = {**MESSAGE_FIXTURE, "sid": None, "body": "body_canary_24681357"}
    result, _ = send(SEND_SMS, lambda request: httpx.Response(201, json=body))
    assert result.outcome is OperationOutcome.UNKNOWN
    assert "canary" not in result.message


def test_a_redirect_is_not_followed() -> None:
    result, seen = send(
        SEND_SMS,
        lambda request: httpx.Response(302, headers={"location": "https://example.com/"}),
    )
    assert len(seen) == 1
    assert result.outcome is OperationOutcome.UNKNOWN


# -- the network -------------------------------------------------------------------------------


def test_connection_refused_is_transient() -> None:
    result, _ = send(SEND_SMS, environ={"RELAYKIT_TWILIO_API_BASE": closed_port_url()})
    assert result.outcome is OperationOutcome.TRANSIENT, result
    assert "could not reach" in result.message


def test_a_read_timeout_is_unknown() -> None:
    # The request went out: Twilio may have sent the message.
    with silent_server() as base:
        result, _ = send(SEND_WHATSAPP, environ={"RELAYKIT_TWILIO_API_BASE": base}, timeout=0.3)
    assert result.outcome is OperationOutcome.UNKNOWN, result
    assert "in time" in result.message


# -- the account SID in the path ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("account_sid", "raw_path"),
    [
        ("AC/../Calls", b"/2010-04-01/Accounts/AC%2F..%2FCalls/Messages.json"),
        ("AC?PageSize=1#x", b"/2010-04-01/Accounts/AC%3FPageSize%3D1%23x/Messages.json"),
        ("...", b"/2010-04-01/Accounts/.../Messages.json"),
        ("account_sid_placeholder", b"/2010-04-01/Accounts/account_sid_placeholder/Messages.json"),
    ],
)
def test_the_account_sid_stays_in_its_path_segment(account_sid: str, raw_path: bytes) -> None:
    result, seen = send(
        SEND_SMS,
        lambda request: twilio_error(401, 20003, "Authenticate"),
        credentials={**CREDENTIALS, "account_sid": account_sid},
    )
    assert result.outcome is OperationOutcome.AUTH_FAILED
    assert [r.url.raw_path for r in seen] == [raw_path]
    assert seen[0].url.query == b""
    assert basic_auth(seen[0]) == f"{account_sid}:{AUTH_TOKEN}"


@pytest.mark.parametrize("account_sid", ["", ".", ".."])
def test_an_account_sid_no_path_can_carry_fails_without_a_request(account_sid: str) -> None:
    result, seen = send(SEND_SMS, created, credentials={**CREDENTIALS, "account_sid": account_sid})
    assert seen == []
    assert result.outcome is OperationOutcome.AUTH_FAILED
    assert messages_path(account_sid) is None


# -- secrets -----------------------------------------------------------------------------------


@pytest.mark.parametrize("secrets", [SECRETS, {}], ids=["redacted-by-core", "no-core-redaction"])
@pytest.mark.parametrize("status", [400, 401, 429, 503])
def test_an_echoed_auth_token_never_reaches_the_message(
    secrets: dict[str, Any], status: int
) -> None:
    result, _ = send(
        SEND_SMS,
        lambda request: twilio_error(status, 20003, f"Authenticate {AUTH_TOKEN}"),
        secrets=secrets,
    )
    assert result.outcome is not OperationOutcome.SUCCEEDED
    assert AUTH_TOKEN not in result.message
    assert "Authenticate" in result.message


@pytest.mark.parametrize(
    "respond",
    [
        created,
        lambda request: twilio_error(401, 20003, "Authenticate"),
        lambda request: twilio_error(400, 21211, INVALID_TO),
        lambda request: httpx.Response(201, text="{not json"),
        lambda request: httpx.Response(201, json={"sid": None, "auth_token": AUTH_TOKEN}),
    ],
)
def test_the_auth_token_is_in_no_message(respond: Respond) -> None:
    result, _ = send(SEND_SMS, respond, secrets={})
    assert AUTH_TOKEN not in result.message
    assert "canary" not in result.message


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
    assert {"To", "From", "Body"} <= set(request_schema["properties"])
    assert "whatsapp:" in request_schema["properties"]["To"]["description"]
    # The answer: 201 with the message resource; the fixture is Twilio's example.
    created_response = create["responses"]["201"]["content"]["application/json"]
    assert created_response["schema"] == {"$ref": "#/components/schemas/api.v2010.account.message"}
    assert created_response["examples"]["create"]["value"] == MESSAGE_FIXTURE
    message = spec["components"]["schemas"]["api.v2010.account.message"]["properties"]
    assert message["sid"]["type"] == "string"
    assert message["status"] == {"$ref": "#/components/schemas/message_enum_status"}
    assert "queued" in spec["components"]["schemas"]["message_enum_status"]["enum"]
