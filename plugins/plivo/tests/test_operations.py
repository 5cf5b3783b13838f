"""Plivo's send_sms and send_whatsapp against Plivo's documented answers, faked at the
transport and run through the core's :func:`relaykit.operations.run_operation`.

The 202 body is the shape of Plivo's documented "Send a message" response (``api_id``,
``message`` "message(s) queued", ``message_uuid`` a list), with the UUID of Plivo's own
example. Error bodies follow Plivo's documented ``{"api_id": …, "error": …}``; Plivo does not
document the text of each error, so apart from "authentication failed" the texts below are
stand-ins.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

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
from relaykit_plivo import PROVIDER
from relaykit_plivo.operations import message_path

AUTH_ID = "MAC0FFEE0123456789AB"
AUTH_TOKEN = "auth_token_canary_9a8b7c6d5e"
API_ID = "a1b2c3d4-0000-11ee-8000-0242ac110002"
MESSAGE_UUID = "db3ce55a-7f1d-11e1-8ea7-1231380bc196"
FROM_NUMBER = "+15550100000"
TO_NUMBER = "+14155552345"
CREDENTIALS = {"auth_id": AUTH_ID, "auth_token": AUTH_TOKEN, "from_number": FROM_NUMBER}
SECRETS = {"auth_token": AUTH_TOKEN}  # what the dispatcher hands run_operation: the sensitive ones

QUEUED_FIXTURE: dict[str, Any] = {
    "api_id": API_ID,
    "message": "message(s) queued",
    "message_uuid": [MESSAGE_UUID],
}

INVALID_DST = "invalid destination number"  # a stand-in: Plivo does not document its texts

Respond = Callable[[httpx.Request], httpx.Response]


def plivo_error(status: int, message: str) -> httpx.Response:
    """Plivo's documented error object."""
    return httpx.Response(status, json={"api_id": API_ID, "error": message})


def queued(request: httpx.Request) -> httpx.Response:
    return httpx.Response(202, json=QUEUED_FIXTURE)


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
        api_base=(environ or {}).get("RELAYKIT_PLIVO_API_BASE"),
        timeout=timeout,
        idempotency_key="op1",
        operation_id="op1",
        secrets=SECRETS if secrets is None else secrets,
    )
    return result, seen


def sent_json(request: httpx.Request) -> Any:
    assert request.headers["content-type"] == "application/json"
    return json.loads(request.content)


def basic_auth(request: httpx.Request) -> str:
    scheme, _, encoded = request.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    return base64.b64decode(encoded).decode()


def assert_message_create(request: httpx.Request) -> None:
    assert request.method == "POST"
    assert request.url.host == "api.plivo.com"
    # The trailing slash is part of Plivo's resource URI.
    assert request.url.raw_path == f"/v1/Account/{AUTH_ID}/Message/".encode()
    assert request.url.query == b""
    assert basic_auth(request) == f"{AUTH_ID}:{AUTH_TOKEN}"
    # Plivo's Message API has no idempotency key; none is made up.
    assert "idempotency-key" not in request.headers


# -- the provider record -----------------------------------------------------------------------


def test_the_provider_is_well_formed_so_the_catalog_loads_it() -> None:
    assert provider_problems(PROVIDER, STANDARD_CONTRACTS) == []
    assert set(PROVIDER.operations) == {SEND_SMS, SEND_WHATSAPP}


# -- success -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("capability", "kind"), [(SEND_SMS, "sms"), (SEND_WHATSAPP, "whatsapp")])
def test_send(capability: str, kind: str) -> None:
    result, seen = send(capability, queued, body='Hi "there" & bye \U0001f44d')
    assert result.outcome is OperationOutcome.SUCCEEDED, result
    assert result.status_code == 202
    assert result.result == MessageResult(
        provider_message_id=MESSAGE_UUID, provider_status="queued", to=TO_NUMBER, from_=FROM_NUMBER
    )
    assert len(seen) == 1
    assert_message_create(seen[0])
    # E.164 as relaykit holds it, for WhatsApp too (no channel prefix at Plivo).
    assert sent_json(seen[0]) == {
        "src": FROM_NUMBER,
        "dst": TO_NUMBER,
        "text": 'Hi "there" & bye \U0001f44d',
        "type": kind,
    }


@pytest.mark.parametrize("capability", [SEND_SMS, SEND_WHATSAPP])
def test_from_overrides_the_integrations_number(capability: str) -> None:
    result, seen = send(capability, queued, from_="+15550100099")
    assert result.outcome is OperationOutcome.SUCCEEDED, result
    assert sent_json(seen[0])["src"] == "+15550100099"
    assert isinstance(result.result, MessageResult)
    assert result.result.from_ == "+15550100099"


def test_without_from_the_integrations_number_is_the_sender() -> None:
    result, seen = send(
        SEND_SMS, queued, credentials={**CREDENTIALS, "from_number": "+447700900123"}
    )
    assert sent_json(seen[0])["src"] == "+447700900123"
    assert isinstance(result.result, MessageResult)
    assert result.result.from_ == "+447700900123"


def test_the_first_uuid_is_the_message_id() -> None:
    result, _ = send(
        SEND_SMS,
        lambda request: httpx.Response(
            202, json={**QUEUED_FIXTURE, "message_uuid": [MESSAGE_UUID, "other"]}
        ),
    )
    assert isinstance(result.result, MessageResult)
    assert result.result.provider_message_id == MESSAGE_UUID


def test_the_api_base_override_is_used() -> None:
    seen: list[str] = []

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return queued(request)

    result, _ = send(
        SEND_SMS, respond, environ={"RELAYKIT_PLIVO_API_BASE": "http://127.0.0.1:9/x/"}
    )
    assert result.outcome is OperationOutcome.SUCCEEDED
    assert seen == [f"http://127.0.0.1:9/x/v1/Account/{AUTH_ID}/Message/"]


# -- Plivo's refusals --------------------------------------------------------------------------


@pytest.mark.parametrize("capability", [SEND_SMS, SEND_WHATSAPP])
def test_bad_credentials_are_auth_failed(capability: str) -> None:
    result, _ = send(capability, lambda request: plivo_error(401, "authentication failed"))
    assert result.outcome is OperationOutcome.AUTH_FAILED, result
    assert result.status_code == 401
    assert result.message == "authentication failed"
    assert result.provider_code is None  # Plivo's errors carry no code


def test_a_plain_text_401_is_auth_failed_with_the_status_line() -> None:
    result, _ = send(
        SEND_SMS,
        lambda request: httpx.Response(
            401,
            text="Could not verify your access level for that URL.",
            headers={"content-type": "text/plain"},
        ),
    )
    assert result.outcome is OperationOutcome.AUTH_FAILED
    assert result.message == "HTTP 401 Unauthorized"


def test_forbidden_is_auth_failed() -> None:
    result, _ = send(
        SEND_SMS, lambda request: plivo_error(403, "account is not allowed to access this resource")
    )
    assert result.outcome is OperationOutcome.AUTH_FAILED
    assert result.status_code == 403


def test_a_bad_request_is_rejected_with_plivos_message() -> None:
    result, _ = send(SEND_WHATSAPP, lambda request: plivo_error(400, INVALID_DST))
    assert result.outcome is OperationOutcome.REJECTED, result
    assert result.status_code == 400
    assert result.message == INVALID_DST
    assert result.provider_code is None


def test_a_rejection_with_a_map_of_errors_keeps_the_status_line() -> None:
    result, _ = send(
        SEND_SMS,
        lambda request: httpx.Response(400, json={"api_id": API_ID, "error": {"dst": ["x"]}}),
    )
    assert result.outcome is OperationOutcome.REJECTED
    assert result.message == "HTTP 400 Bad Request"


def test_rate_limited_is_transient_with_retry_after() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        response = plivo_error(429, "too many requests")
        response.headers["Retry-After"] = "7"
        return response

    result, _ = send(SEND_SMS, respond)
    assert result.outcome is OperationOutcome.TRANSIENT, result
    assert result.status_code == 429
    assert result.retry_after == 7.0


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(status: int) -> None:
    result, _ = send(SEND_SMS, lambda request: plivo_error(status, "internal server error"))
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


# -- answers without a message UUID ------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(202, text="{not json"),
        httpx.Response(202, text="<html>ok</html>", headers={"content-type": "text/html"}),
        httpx.Response(202, json=[QUEUED_FIXTURE]),
        httpx.Response(202, json={"api_id": API_ID, "message": "message(s) queued"}),
        httpx.Response(202, json={**QUEUED_FIXTURE, "message_uuid": []}),
        httpx.Response(202, json={**QUEUED_FIXTURE, "message_uuid": MESSAGE_UUID}),
        httpx.Response(202, json={**QUEUED_FIXTURE, "message_uuid": [""]}),
        httpx.Response(202, json={**QUEUED_FIXTURE, "message_uuid": [None]}),
        httpx.Response(200, json={"api_id": API_ID, "error": "authentication failed"}),
        httpx.Response(204),
    ],
)
def test_a_2xx_without_a_message_uuid_is_unknown(response: httpx.Response) -> None:
    # The message may have been queued: no fallback to another provider, hence unknown.
    result, _ = send(SEND_SMS, lambda request: response)
    assert result.outcome is OperationOutcome.UNKNOWN, result
    assert result.status_code == response.status_code
    assert result.result is None


def test_a_malformed_2xx_body_is_not_repeated() -> None:
    body = {"api_id": "api_id_canary_24681357", "message": "message_canary_13579"}
    result, _ = send(SEND_SMS, lambda request: httpx.Response(202, json=body))
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
    result, _ = send(SEND_SMS, environ={"RELAYKIT_PLIVO_API_BASE": closed_port_url()})
    assert result.outcome is OperationOutcome.TRANSIENT, result
    assert "could not reach" in result.message


def test_a_read_timeout_is_unknown() -> None:
    # The request went out: Plivo may have queued the message.
    with silent_server() as base:
        result, _ = send(SEND_WHATSAPP, environ={"RELAYKIT_PLIVO_API_BASE": base}, timeout=0.3)
    assert result.outcome is OperationOutcome.UNKNOWN, result
    assert "in time" in result.message


# -- the Auth ID in the path -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth_id", "raw_path"),
    [
        ("MA/../Call", b"/v1/Account/MA%2F..%2FCall/Message/"),
        ("MA?limit=1#x", b"/v1/Account/MA%3Flimit%3D1%23x/Message/"),
        ("...", b"/v1/Account/.../Message/"),
    ],
)
def test_the_auth_id_stays_in_its_path_segment(auth_id: str, raw_path: bytes) -> None:
    result, seen = send(
        SEND_SMS,
        lambda request: plivo_error(401, "authentication failed"),
        credentials={**CREDENTIALS, "auth_id": auth_id},
    )
    assert result.outcome is OperationOutcome.AUTH_FAILED
    assert [r.url.raw_path for r in seen] == [raw_path]
    assert seen[0].url.query == b""
    assert basic_auth(seen[0]) == f"{auth_id}:{AUTH_TOKEN}"


@pytest.mark.parametrize("auth_id", ["", ".", ".."])
def test_an_auth_id_no_path_can_carry_fails_without_a_request(auth_id: str) -> None:
    result, seen = send(SEND_SMS, queued, credentials={**CREDENTIALS, "auth_id": auth_id})
    assert seen == []
    assert result.outcome is OperationOutcome.AUTH_FAILED
    assert message_path(auth_id) is None


# -- secrets -----------------------------------------------------------------------------------


@pytest.mark.parametrize("secrets", [SECRETS, {}], ids=["redacted-by-core", "no-core-redaction"])
@pytest.mark.parametrize("status", [400, 401, 429, 503])
def test_an_echoed_auth_token_never_reaches_the_message(
    secrets: dict[str, Any], status: int
) -> None:
    result, _ = send(
        SEND_SMS,
        lambda request: plivo_error(status, f"authentication failed for {AUTH_TOKEN}"),
        secrets=secrets,
    )
    assert result.outcome is not OperationOutcome.SUCCEEDED
    assert AUTH_TOKEN not in result.message
    assert "authentication failed" in result.message


@pytest.mark.parametrize(
    "respond",
    [
        queued,
        lambda request: plivo_error(401, "authentication failed"),
        lambda request: plivo_error(400, INVALID_DST),
        lambda request: httpx.Response(202, text="{not json"),
        lambda request: httpx.Response(202, json={"api_id": API_ID, "auth_token": AUTH_TOKEN}),
    ],
)
def test_the_auth_token_is_in_no_message(respond: Respond) -> None:
    result, _ = send(SEND_SMS, respond, secrets={})
    assert AUTH_TOKEN not in result.message
    assert "canary" not in result.message
