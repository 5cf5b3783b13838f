"""Twilio's webhooks: ``X-Twilio-Signature`` against twilio-python's own vectors, message
status callbacks, and relaykit's webhook contract (``WebhookContractTests``).

The vectors are twilio-python's ``tests/unit/test_request_validator.py`` (token ``12345``,
``https://mycompany.com/myapp.php?foo=1&bar=2``, its parameters and expected signatures),
each case as the SDK's test states it. The status callback's fields are the ones Twilio
documents for a message status callback (``MessageSid``, ``MessageStatus``, ``AccountSid``,
``From``, ``To``, ``ApiVersion``, ``SmsSid``, ``SmsStatus``, ``ErrorCode`` when it failed);
the statuses are ``message_enum_status`` of Twilio's OpenAPI
(shared/provider-specs/twilio_api_v2010.json).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import msgspec
import pytest

from relaykit import WebhookContext, WebhookEvent, WebhookRejected, WebhookRequest
from relaykit.testing import WebhookContractTests
from relaykit_twilio import PROVIDER
from relaykit_twilio.webhooks import (
    MESSAGE_STATUSES,
    body_hash,
    compute_signature,
    is_valid,
    url_variants,
)

TWILIO_SPEC = (
    Path(__file__).resolve().parents[3].parent
    / "shared"
    / "provider-specs"
    / "twilio_api_v2010.json"
)

# twilio-python tests/unit/test_request_validator.py
TOKEN = "12345"
URI = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
    "Caller": "+14158675309",
}
EXPECTED = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
BODY = '{"property": "value", "boolean": true}'
BODY_HASH = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
URI_WITH_BODY = URI + "&bodySHA256=" + BODY_HASH
DUPLICATE_EXPECTED = "IK+Dwps556ElfBT0I3Rgjkr1wJU="

FORM = urlencode(PARAMS).encode()

ACCOUNT_SID = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
AUTH_TOKEN = "auth_token_canary_9a8b7c6d5e"
CREDENTIALS = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from_number": "+15550100000"}
MESSAGE_SID = "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
URL = "https://relay.example.com/webhooks/int_0123456789abcdef"
NOW = WebhookContext(now=dt.datetime(2025, 3, 14, tzinfo=dt.UTC))


def status_callback(status: str = "delivered", **extra: str) -> dict[str, str]:
    """The fields Twilio posts to a message's StatusCallback."""
    return {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "From": "+15550100000",
        "MessageSid": MESSAGE_SID,
        "MessageStatus": status,
        "SmsSid": MESSAGE_SID,
        "SmsStatus": status,
        "To": "+14155552345",
        **extra,
    }


def twilio_request(
    fields: Mapping[str, str], *, url: str = URL, token: str = AUTH_TOKEN
) -> WebhookRequest:
    body = urlencode(fields).encode()
    return WebhookRequest(
        method="POST",
        url=url,
        headers={
            "x-twilio-signature": compute_signature(url, fields.items(), token),
            "content-type": "application/x-www-form-urlencoded",
        },
        body=body,
    )


def receive(
    request: WebhookRequest, credentials: Mapping[str, Any] = CREDENTIALS
) -> list[WebhookEvent]:
    return PROVIDER.webhooks.receive(request, credentials, NOW)  # type: ignore[union-attr]


# -- the signature: twilio-python's vectors --------------------------------------------------


def test_compute_signature() -> None:
    assert compute_signature(URI, PARAMS.items(), TOKEN) == EXPECTED


def test_compute_hash_unicode() -> None:
    assert body_hash(BODY.encode()) == BODY_HASH


def test_compute_signature_duplicate_params() -> None:
    # Names sorted, a name's values sorted, duplicates dropped (MultiDict and QueryDict cases).
    params = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678")]
    params += [("Digits", "1234"), ("Digits", "1234")]
    assert compute_signature(URI, params, TOKEN) == DUPLICATE_EXPECTED


def test_validation() -> None:
    assert is_valid(URI, FORM, EXPECTED, TOKEN)


def test_validation_removes_port_on_https() -> None:
    assert is_valid(URI.replace(".com", ".com:1234"), FORM, EXPECTED, TOKEN)


def test_validation_removes_port_on_http() -> None:
    uri = URI.replace(".com", ".com:1234").replace("https", "http")
    assert is_valid(uri, FORM, "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=", TOKEN)  # signed with port 1234


def test_validation_adds_port_on_https() -> None:
    assert is_valid(URI, FORM, "kvajT1Ptam85bY51eRf/AJRuM3w=", TOKEN)  # signed with port 443


def test_validation_adds_port_on_http() -> None:
    uri = URI.replace("https", "http")
    assert is_valid(uri, FORM, "0ZXoZLH/DfblKGATFgpif+LLRf4=", TOKEN)  # signed with port 80


def test_validation_of_body_succeeds() -> None:
    assert is_valid(URI_WITH_BODY, BODY.encode(), "a9nBmqA0ju/hNViExpshrM61xv4=", TOKEN)


def test_url_variants() -> None:
    assert url_variants("https://a.example:8443/p?q=1") == (
        "https://a.example/p?q=1",
        "https://a.example:8443/p?q=1",
    )
    assert url_variants("http://a.example/p") == ("http://a.example/p", "http://a.example:80/p")


# -- tampering -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "body", "signature", "token"),
    [
        (URI, FORM, EXPECTED, "123456"),  # another token
        (URI.replace("foo=1", "foo=2"), FORM, EXPECTED, TOKEN),  # another URL
        (URI.replace("https", "http"), FORM, EXPECTED, TOKEN),  # another scheme
        (URI, FORM.replace(b"1234", b"1235"), EXPECTED, TOKEN),  # another parameter value
        (URI, FORM + b"&Extra=1", EXPECTED, TOKEN),  # a parameter added
        (URI, FORM, EXPECTED.lower(), TOKEN),
        (URI, FORM, "", TOKEN),
        # A JSON body whose hash is not bodySHA256, under the URL's valid signature.
        (URI_WITH_BODY, BODY.encode() + b" ", "a9nBmqA0ju/hNViExpshrM61xv4=", TOKEN),
        (URI_WITH_BODY, BODY.encode(), "a9nBmqA0ju/hNViExpshrM61xv4=", "54321"),
    ],
)
def test_tampering_is_refused(uri: str, body: bytes, signature: str, token: str) -> None:
    assert not is_valid(uri, body, signature, token)


def test_a_port_that_is_not_a_number_is_rejected() -> None:
    with pytest.raises(WebhookRejected, match="invalid port"):
        is_valid("https://relay.example.com:x/webhooks/i", FORM, EXPECTED, TOKEN)


# -- status callbacks ------------------------------------------------------------------------


def test_a_delivered_callback() -> None:
    [event] = receive(twilio_request(status_callback()))
    assert event == WebhookEvent(
        dedupe_key=f"{MESSAGE_SID}:delivered",
        type="message.delivered",
        object_id=MESSAGE_SID,
        status="delivered",
    )


def test_an_undelivered_callback_keeps_twilios_error_code() -> None:
    [event] = receive(twilio_request(status_callback("undelivered", ErrorCode="30003")))
    assert (event.status, event.provider_code) == ("undelivered", "30003")


@pytest.mark.parametrize(
    ("twilio_status", "status"),
    [
        ("accepted", "accepted"),
        ("scheduled", "accepted"),
        ("queued", "accepted"),
        ("sending", "sent"),
        ("sent", "sent"),
        ("delivered", "delivered"),
        ("undelivered", "undelivered"),
        ("failed", "failed"),
        ("read", "delivered"),
        ("canceled", "failed"),
        ("partially_delivered", None),
        ("receiving", None),
        ("something_new", None),
    ],
)
def test_twilios_statuses(twilio_status: str, status: str | None) -> None:
    [event] = receive(twilio_request(status_callback(twilio_status)))
    assert (event.type, event.status) == (f"message.{twilio_status}", status)
    assert event.dedupe_key == f"{MESSAGE_SID}:{twilio_status}"


def test_the_status_map_covers_twilios_enum() -> None:
    if not TWILIO_SPEC.is_file():
        pytest.skip(f"{TWILIO_SPEC} is not beside this checkout")
    spec = json.loads(TWILIO_SPEC.read_text(encoding="utf-8"))
    statuses = set(spec["components"]["schemas"]["message_enum_status"]["enum"])
    # Every outbound status is mapped; inbound ones and partially_delivered are stored only.
    assert statuses - set(MESSAGE_STATUSES) == {"receiving", "received", "partially_delivered"}
    assert set(MESSAGE_STATUSES) <= statuses


@pytest.mark.parametrize("account", ["ACbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "", None])
def test_a_callback_for_another_account_is_refused(account: str | None) -> None:
    fields = status_callback()
    if account is None:
        del fields["AccountSid"]
    else:
        fields["AccountSid"] = account
    with pytest.raises(WebhookRejected, match="another Twilio account"):
        receive(twilio_request(fields))


@pytest.mark.parametrize("missing", ["MessageSid", "MessageStatus"])
def test_a_body_that_is_not_a_status_callback_is_rejected(missing: str) -> None:
    fields = {k: v for k, v in status_callback().items() if k != missing}
    with pytest.raises(WebhookRejected, match="not a Twilio message status callback"):
        receive(twilio_request(fields))


def test_a_json_body_is_checked_by_its_hash() -> None:
    body = json.dumps(status_callback("sent")).encode()
    url = f"{URL}?bodySHA256={body_hash(body)}"
    signature = compute_signature(url, [], AUTH_TOKEN)
    request = WebhookRequest(
        method="POST", url=url, headers={"x-twilio-signature": signature}, body=body
    )
    [event] = receive(request)
    assert (event.object_id, event.status) == (MESSAGE_SID, "sent")
    with pytest.raises(WebhookRejected):
        receive(
            WebhookRequest(method="POST", url=url, headers=request.headers, body=body[:-1] + b" ")
        )


def test_the_url_twilio_called_is_what_is_signed() -> None:
    # Behind a proxy the receiver must hand the public URL; the internal one does not match.
    request = twilio_request(status_callback())
    internal = WebhookRequest(
        method="POST",
        url="http://10.0.0.5:8000/webhooks/int_0123456789abcdef",
        headers=request.headers,
        body=request.body,
    )
    with pytest.raises(WebhookRejected, match="does not match"):
        receive(internal)
    # Twilio signing with the default port is the same URL.
    with_port = twilio_request(status_callback(), url=URL.replace(".com/", ".com:443/"))
    assert receive(msgspec.structs.replace(with_port, url=URL))


# -- relaykit's webhook contract -------------------------------------------------------------


class TestTwilioWebhooks(WebhookContractTests):
    provider = PROVIDER
    credentials = CREDENTIALS
    sample_body = urlencode(status_callback()).encode()
    signature_headers = ("x-twilio-signature",)

    def sign(
        self, body: bytes, credentials: Mapping[str, Any], signed_at: dt.datetime
    ) -> WebhookRequest:
        try:
            params = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            params = []  # Twilio never sends such a body; its signature is then the URL's
        signature = compute_signature(self.webhook_url, params, credentials["auth_token"])
        return WebhookRequest(
            method="POST",
            url=self.webhook_url,
            headers={"x-twilio-signature": signature},
            body=body,
        )
