"""Plivo's webhooks: the V3 and V2 signatures against the vectors Plivo's SDKs test with,
message callbacks, and relaykit's webhook contract (``WebhookContractTests``).

Vectors:

* V2: plivo-python ``tests/resources/test_signature.py`` (and plivo-node ``test/utils.js``):
  ``https://answer.url``, nonce ``12345``, token ``my_auth_token``.
* V3: plivo-go ``utils_test.go`` ``TestValidateSignatureV3Pass1`` to ``Pass4`` (plivo-python
  ships no V3 vector; plivo-go implements the same string). Its GET cases pass the
  parameters apart from the URL; a GET's parameters are its query, so here they are put in
  the URL's query, which signs the same string.
* A non-ASCII body: made once with plivo-python 4.63.0's ``validate_v3_signature`` path
  (``get_signature_v3(token, construct_post_url(url, params).decode("utf-8"), nonce)``) and
  pinned, with ``validate_v3_signature`` answering True for it.

The callback's fields are named after Plivo's message status callback (``MessageUUID``,
``Status``, ``ErrorCode``, ``From``, ``To``, ``ParentMessageUUID``, ``PartInfo``,
``TotalAmount``, ``TotalRate``, ``Units``); the UUID is Plivo's own example's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlencode

import msgspec
import pytest

from relaykit import WebhookContext, WebhookEvent, WebhookRejected, WebhookRequest
from relaykit.testing import WebhookContractTests
from relaykit_plivo import PROVIDER
from relaykit_plivo.webhooks import (
    MESSAGE_STATUSES,
    v2_signature,
    v3_signature,
    v3_signed_string,
)

# plivo-python tests/resources/test_signature.py
V2_URL, V2_NONCE, V2_TOKEN = "https://answer.url", "12345", "my_auth_token"
V2_SIGNATURE = "ehV3IKhLysWBxC1sy8INm0qGoQYdYsHwuoKjsX7FsXc="

# plivo-go utils_test.go, TestValidateSignatureV3Pass1..4
GO_URL_WITH_QUERY = "https://plivobin.non-prod.plivops.com/api/v1/validate_signature03.xml/?a=b&c=d"
GO_URL = "https://plivobin.non-prod.plivops.com/api/v1/validate_signature03.xml"
GO_NONCE = "31627761595286130198"
GO_TOKEN = "Y2Q2ZDgxZmY5YWRiOTI5YmQ1Njg0MTAxZWIyOTc4"
GO_PARAMS = {
    "Direction": "outbound",
    "From": "19792014278",
    "ALegUUID": "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36",
    "CallStatus": "in-progress",
    "BillRate": "0.002",
    "ParentAuthID": "MANWVLYTK4ZWU1YTY4QA",
    "To": "sip:PlivoSignature382029104058171078704104@phone-qa.voice.plivodev.com",
    "ALegRequestUUID": "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36",
    "CallUUID": "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36",
    "RequestUUID": "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36",
    "SIP-H-To": "<sip:PlivoSignature382029104058171078704104@52.9.11.55;transport=udp>;tag=1",
    "SessionStart": "2020-04-08 11:34:33.238707",
    "Event": "StartApp",
}
GO_VECTORS = [
    ("POST", GO_URL_WITH_QUERY, "k7Pusd4OxCIjR5IfA9iedDNu/h/gbdYqdzG/MiYtd1c="),  # Pass1
    ("GET", GO_URL_WITH_QUERY, "UBq8jAtd32wR8EK9VgxbBn4n5rpI/l1H9iN4WfSEHFQ="),  # Pass2
    ("POST", GO_URL, "iAjE5QqI37mbkYe4w3jTMudqEzbDufdqi7sYwTu64e0="),  # Pass3
    ("GET", GO_URL, "i/MQsaQSAd6fiKhOh2qeeeLHZ9faldADSb3/7+Akfbc="),  # Pass4
]

# Pinned from plivo-python 4.63.0 (see the module docstring).
UNICODE_URL = "https://relay.example.com/webhooks/int_1?x=1"
UNICODE_PARAMS = {
    "MessageUUID": "db3ce55a-7f1d-11e1-8ea7-1231380bc196",
    "Status": "delivered",
    "From": "+15550100000",
    "To": "+14155552345",
    "Text": "h\u00e9llo \u2713",
}
UNICODE_SIGNATURE = "QJ3ciXUKR3lO639DfoPj03Okj3ltmOkBUeX/mkUgP3A="

AUTH_ID = "MAC0FFEE0123456789AB"
AUTH_TOKEN = "auth_token_canary_9a8b7c6d5e"
CREDENTIALS = {"auth_id": AUTH_ID, "auth_token": AUTH_TOKEN, "from_number": "+15550100000"}
MESSAGE_UUID = "db3ce55a-7f1d-11e1-8ea7-1231380bc196"
URL = "https://relay.example.com/webhooks/int_0123456789abcdef"
NONCE = "05429567804466091622"
NOW = WebhookContext(now=dt.datetime(2025, 3, 14, tzinfo=dt.UTC))


def callback(status: str = "delivered", **extra: str) -> dict[str, str]:
    """The fields Plivo posts to a message's callback ``url``."""
    return {
        "From": "+15550100000",
        "To": "+14155552345",
        "MessageUUID": MESSAGE_UUID,
        "ParentMessageUUID": MESSAGE_UUID,
        "PartInfo": "1 of 1",
        "Status": status,
        "TotalAmount": "0.00500",
        "TotalRate": "0.00500",
        "Units": "1",
        "ErrorCode": "",
        **extra,
    }


def form_params(fields: Mapping[str, str]) -> dict[str, list[str]]:
    return {k: [v] for k, v in fields.items()}


def v3_request(
    fields: Mapping[str, str], *, token: str = AUTH_TOKEN, url: str = URL, **headers: str
) -> WebhookRequest:
    signature = v3_signature(token, "POST", url, form_params(fields), NONCE)
    return WebhookRequest(
        method="POST",
        url=url,
        headers={
            "x-plivo-signature-v3": signature,
            "x-plivo-signature-v3-nonce": NONCE,
            "content-type": "application/x-www-form-urlencoded",
            **headers,
        },
        body=urlencode(fields).encode(),
    )


def receive(
    request: WebhookRequest, credentials: Mapping[str, Any] = CREDENTIALS
) -> list[WebhookEvent]:
    return PROVIDER.webhooks.receive(request, credentials, NOW)  # type: ignore[union-attr]


# -- the signatures: the SDKs' vectors -------------------------------------------------------


def test_v2_signature() -> None:
    assert v2_signature(V2_TOKEN, V2_URL, V2_NONCE) == V2_SIGNATURE
    assert v2_signature("my_auth_tokens", V2_URL, V2_NONCE) != V2_SIGNATURE
    # The query is not signed.
    assert v2_signature(V2_TOKEN, V2_URL + "?a=1", V2_NONCE) == V2_SIGNATURE


@pytest.mark.parametrize(("method", "url", "signature"), GO_VECTORS)
def test_v3_signature(method: str, url: str, signature: str) -> None:
    if method == "GET":
        url = f"{url}{'&' if '?' in url else '?'}{urlencode(GO_PARAMS)}"
        params: dict[str, list[str]] = {}
    else:
        params = form_params(GO_PARAMS)
    assert v3_signature(GO_TOKEN, method, url, params, GO_NONCE) == signature


@pytest.mark.parametrize(("method", "url", "signature"), GO_VECTORS)
def test_v3_through_receive(method: str, url: str, signature: str) -> None:
    # The same vectors as the receiver sees them: headers, a form body for a POST.
    if method == "GET":
        url, body = f"{url}{'&' if '?' in url else '?'}{urlencode(GO_PARAMS)}", b""
    else:
        body = urlencode(GO_PARAMS).encode()
    request = WebhookRequest(
        method=method,
        url=url,
        headers={"x-plivo-signature-v3": signature, "x-plivo-signature-v3-nonce": GO_NONCE},
        body=body,
    )
    # The signature is Plivo's; the body is a voice callback, not a message's.
    with pytest.raises(WebhookRejected, match="not a Plivo message callback"):
        receive(request, {**CREDENTIALS, "auth_token": GO_TOKEN})
    with pytest.raises(WebhookRejected, match="does not match"):
        receive(request)


def test_v3_signs_non_ascii_as_utf_8() -> None:
    params = form_params(UNICODE_PARAMS)
    assert v3_signature("my_auth_token", "POST", UNICODE_URL, params, "12345") == UNICODE_SIGNATURE


def test_v3_signed_string() -> None:
    params = {"b": ["2"], "a": ["3", "1"]}
    url = "https://h.example/p?z=1&y=2"
    assert v3_signed_string("POST", url, params) == "https://h.example/p?y=2&z=1.a1a3b2"
    assert v3_signed_string("POST", "https://h.example/p", params) == "https://h.example/p?a1a3b2"
    assert v3_signed_string("POST", "https://h.example/p", {}) == "https://h.example/p"
    assert v3_signed_string("GET", url, {}) == "https://h.example/p?y=2&z=1"


# -- which signature decides -----------------------------------------------------------------


def test_several_v3_signatures_pass_with_any_match() -> None:
    # One signature per active auth token, comma-separated.
    request = v3_request(callback())
    own = request.headers["x-plivo-signature-v3"]
    headers = {**request.headers, "x-plivo-signature-v3": f"c29tZW90aGVy,{own}"}
    assert receive(msgspec.structs.replace(request, headers=headers))


def test_the_main_accounts_v3_signature_passes_with_the_main_token() -> None:
    request = v3_request(callback())
    headers = {
        "x-plivo-signature-ma-v3": request.headers["x-plivo-signature-v3"],
        "x-plivo-signature-v3": "c3ViYWNjb3VudA==",  # the subaccount's, another token
        "x-plivo-signature-v3-nonce": NONCE,
    }
    assert receive(msgspec.structs.replace(request, headers=headers))


def v2_headers(token: str = AUTH_TOKEN) -> dict[str, str]:
    return {
        "x-plivo-signature-v2": v2_signature(token, URL, NONCE),
        "x-plivo-signature-v2-nonce": NONCE,
    }


def test_v2_alone_is_accepted() -> None:
    request = WebhookRequest(
        method="POST", url=URL, headers=v2_headers(), body=urlencode(callback()).encode()
    )
    [event] = receive(request)
    assert event.object_id == MESSAGE_UUID
    with pytest.raises(WebhookRejected, match="does not match"):
        receive(msgspec.structs.replace(request, headers=v2_headers("another_token")))


def test_a_replayed_v2_signature_with_another_body_is_a_duplicate() -> None:
    """V2 signs the URL and nonce, not the body: an event accepted on V2 alone is keyed by
    its nonce, so a captured signature replayed with a forged body is the same delivery."""
    first = WebhookRequest(
        method="POST", url=URL, headers=v2_headers(), body=urlencode(callback("sent")).encode()
    )
    forged = msgspec.structs.replace(first, body=urlencode(callback("delivered")).encode())
    [original], [replayed] = receive(first), receive(forged)
    assert original.dedupe_key == replayed.dedupe_key == f"v2-nonce:{NONCE}"
    [signed_body] = receive(v3_request(callback("sent")))
    assert signed_body.dedupe_key == f"{MESSAGE_UUID}:sent"


def test_a_bad_v3_is_not_rescued_by_a_good_v2() -> None:
    # V2 does not cover the body: when V3 came, V3 decides.
    request = v3_request(callback("delivered"))
    forged = msgspec.structs.replace(
        request,
        headers={**request.headers, **v2_headers()},
        body=urlencode(callback("failed")).encode(),
    )
    with pytest.raises(WebhookRejected, match="does not match"):
        receive(forged)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-plivo-signature-v3": "abc"},
        {"x-plivo-signature-v3-nonce": NONCE},
        {"x-plivo-signature-v2": "abc"},
        {"x-plivo-signature-v2-nonce": NONCE},
        {"x-plivo-signature": "abc"},
    ],
)
def test_without_a_signature_and_its_nonce_it_is_rejected(headers: dict[str, str]) -> None:
    request = WebhookRequest(
        method="POST", url=URL, headers=headers, body=urlencode(callback()).encode()
    )
    with pytest.raises(WebhookRejected, match="no X-Plivo-Signature"):
        receive(request)


# -- message callbacks -----------------------------------------------------------------------


def test_a_delivered_callback() -> None:
    [event] = receive(v3_request(callback()))
    assert event == WebhookEvent(
        dedupe_key=f"{MESSAGE_UUID}:delivered",
        type="message.delivered",
        object_id=MESSAGE_UUID,
        status="delivered",
    )


def test_a_failed_callback_keeps_plivos_error_code() -> None:
    [event] = receive(v3_request(callback("failed", ErrorCode="200")))
    assert (event.status, event.provider_code) == ("failed", "200")


@pytest.mark.parametrize(
    ("plivo_status", "status"),
    [
        ("queued", "accepted"),
        ("sent", "sent"),
        ("delivered", "delivered"),
        ("undelivered", "undelivered"),
        ("failed", "failed"),
        ("rejected", "failed"),
        ("read", "delivered"),
        ("received", None),
    ],
)
def test_plivos_statuses(plivo_status: str, status: str | None) -> None:
    [event] = receive(v3_request(callback(plivo_status)))
    assert (event.type, event.status) == (f"message.{plivo_status}", status)
    assert event.dedupe_key == f"{MESSAGE_UUID}:{plivo_status}"
    assert MESSAGE_STATUSES.get(plivo_status) == status


@pytest.mark.parametrize("missing", ["MessageUUID", "Status"])
def test_a_body_that_is_not_a_message_callback_is_rejected(missing: str) -> None:
    fields = {k: v for k, v in callback().items() if k != missing}
    with pytest.raises(WebhookRejected, match="not a Plivo message callback"):
        receive(v3_request(fields))


def test_the_url_plivo_called_is_what_is_signed() -> None:
    request = v3_request(callback())
    internal = msgspec.structs.replace(
        request, url="http://10.0.0.5:8000/webhooks/int_0123456789abcdef"
    )
    with pytest.raises(WebhookRejected, match="does not match"):
        receive(internal)


# -- relaykit's webhook contract -------------------------------------------------------------


class TestPlivoWebhooks(WebhookContractTests):
    provider = PROVIDER
    credentials = CREDENTIALS
    sample_body = urlencode(callback()).encode()
    signature_headers = ("x-plivo-signature-v3", "x-plivo-signature-v3-nonce")

    def sign(
        self, body: bytes, credentials: Mapping[str, Any], signed_at: dt.datetime
    ) -> WebhookRequest:
        try:
            params = parse_qs(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            params = {}  # Plivo never sends such a body
        signature = v3_signature(credentials["auth_token"], "POST", self.webhook_url, params, NONCE)
        return WebhookRequest(
            method="POST",
            url=self.webhook_url,
            headers={"x-plivo-signature-v3": signature, "x-plivo-signature-v3-nonce": NONCE},
            body=body,
        )
