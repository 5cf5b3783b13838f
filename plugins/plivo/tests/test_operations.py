"""Plivo's send_sms and send_whatsapp against Plivo's documented answers, faked at the
transport and run through the core's :func:`relaykit.operations.run_operation`: what is
Plivo's own. relaykit's operation contract (refusals, throttling, transport, bodies,
secrets) runs in test_verifier.py's ``TestPlivoProvider``.

The 202 body is the shape of Plivo's documented "Send a message" response (``api_id``,
``message`` "message(s) queued", ``message_uuid`` a list), with the UUID of Plivo's own
example. Error bodies follow Plivo's documented ``{"api_id": …, "error": …}``; Plivo does not
document the text of each error, so apart from "authentication failed" the texts below are
stand-ins.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from relaykit import MessageResult, OperationOutcome, OperationResult
from relaykit.capabilities import SEND_SMS, SEND_WHATSAPP
from relaykit.testing import run_recorded
from relaykit_plivo import PROVIDER

AUTH_ID = "MAC0FFEE0123456789AB"
AUTH_TOKEN = "auth_token_canary_9a8b7c6d5e"
API_ID = "a1b2c3d4-0000-11ee-8000-0242ac110002"
MESSAGE_UUID = "db3ce55a-7f1d-11e1-8ea7-1231380bc196"
FROM_NUMBER = "+15550100000"
TO_NUMBER = "+14155552345"
CREDENTIALS = {"auth_id": AUTH_ID, "auth_token": AUTH_TOKEN, "from_number": FROM_NUMBER}

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
    capability: str, respond: Respond, body: str = "Hello! \U0001f44d"
) -> tuple[OperationResult, list[httpx.Request]]:
    """Run the handler for ``capability`` as the dispatcher does; the result and the requests."""
    return run_recorded(PROVIDER, capability, {"to": TO_NUMBER, "body": body}, CREDENTIALS, respond)


def sent_json(request: httpx.Request) -> Any:
    assert request.headers["content-type"] == "application/json"
    return json.loads(request.content)


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
    # E.164 as relaykit holds it, for WhatsApp too (no channel prefix at Plivo).
    assert sent_json(seen[0]) == {
        "src": FROM_NUMBER,
        "dst": TO_NUMBER,
        "text": 'Hi "there" & bye \U0001f44d',
        "type": kind,
    }


WEBHOOK_URL = "https://relay.example.com/webhooks/int_0123456789abcdef"


@pytest.mark.parametrize(("capability", "kind"), [(SEND_SMS, "sms"), (SEND_WHATSAPP, "whatsapp")])
def test_with_a_public_url_the_send_carries_the_callback_url(capability: str, kind: str) -> None:
    # Plivo's Message create takes the callback as url, and the method it calls it with.
    result, seen = run_recorded(
        PROVIDER,
        capability,
        {"to": TO_NUMBER, "body": "Hello"},
        CREDENTIALS,
        queued,
        webhook_url=WEBHOOK_URL,
    )
    assert result.outcome is OperationOutcome.SUCCEEDED, result
    assert sent_json(seen[0]) == {
        "src": FROM_NUMBER,
        "dst": TO_NUMBER,
        "text": "Hello",
        "type": kind,
        "url": WEBHOOK_URL,
        "method": "POST",
    }


def test_without_a_public_url_no_callback_url_is_sent() -> None:
    _, seen = send(SEND_SMS, queued)
    assert not {"url", "method"} & set(sent_json(seen[0]))


def test_the_first_uuid_is_the_message_id() -> None:
    result, _ = send(
        SEND_SMS,
        lambda request: httpx.Response(
            202, json={**QUEUED_FIXTURE, "message_uuid": [MESSAGE_UUID, "other"]}
        ),
    )
    assert isinstance(result.result, MessageResult)
    assert result.result.provider_message_id == MESSAGE_UUID


# -- Plivo's refusals --------------------------------------------------------------------------


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


# -- answers without a message UUID ------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(202, json=[QUEUED_FIXTURE]),
        httpx.Response(202, json={"api_id": API_ID, "message": "message(s) queued"}),
        httpx.Response(202, json={**QUEUED_FIXTURE, "message_uuid": []}),
        httpx.Response(202, json={**QUEUED_FIXTURE, "message_uuid": MESSAGE_UUID}),
        httpx.Response(202, json={**QUEUED_FIXTURE, "message_uuid": [""]}),
        httpx.Response(202, json={**QUEUED_FIXTURE, "message_uuid": [None]}),
        httpx.Response(200, json={"api_id": API_ID, "error": "authentication failed"}),
    ],
)
def test_a_2xx_without_a_message_uuid_is_unknown(response: httpx.Response) -> None:
    # The message may have been queued: no fallback to another provider, hence unknown.
    result, _ = send(SEND_SMS, lambda request: response)
    assert result.outcome is OperationOutcome.UNKNOWN, result
    assert result.status_code == response.status_code
    assert result.result is None
