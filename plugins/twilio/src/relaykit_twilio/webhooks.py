"""Twilio's webhooks: the ``X-Twilio-Signature`` check and message status callbacks.

Twilio signs each request it makes with the account's auth token: ``X-Twilio-Signature`` is
the base64 HMAC-SHA1 of the full URL Twilio called, followed, for a form body, by each
parameter's name and value, names sorted (a repeated name's values sorted, duplicates
dropped). A JSON body is not signed as parameters: the URL carries ``bodySHA256``, the hex
SHA-256 of the body, and the signature covers the URL alone; then the body's hash is checked
too. Twilio is not consistent about the port in the URL it signs, so, as its own
``RequestValidator`` (twilio-python ``twilio/request_validator.py``) does, the URL is tried
without its port and with it (the scheme's default port added when it has none). This
follows that validator step by step; its published vectors are in the tests.

The signature covers the URL: behind a proxy, relaykit must see the URL Twilio called, which
``RELAYKIT_PUBLIC_URL`` gives. Sends carry that URL as ``StatusCallback``
(:mod:`relaykit_twilio.operations`), so the status callbacks come back to relaykit.

A status callback (``MessageSid``, ``MessageStatus``, ``ErrorCode``, ``AccountSid``) becomes
one event about the message ``MessageSid``; ``MessageSid:MessageStatus`` is the dedupe key,
the same on every retry of one status. A callback for another account than the
integration's is refused, whoever signed it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import ParseResult, parse_qs, parse_qsl, urlparse

from relaykit import (
    WebhookContext,
    WebhookEvent,
    WebhookRejected,
    WebhookRequest,
    WebhookScheme,
    hmac_base64,
    signatures_match,
)

SIGNATURE_HEADER = "X-Twilio-Signature"
#: The query parameter that carries a JSON body's hash.
BODY_HASH_PARAMETER = "bodySHA256"

#: Twilio's message statuses (``message_enum_status`` in its OpenAPI) -> relaykit's
#: delivery statuses. ``receiving``, ``received`` (inbound) and ``partially_delivered``
#: are stored only.
MESSAGE_STATUSES: Mapping[str, str] = {
    "accepted": "accepted",
    "scheduled": "accepted",
    "queued": "accepted",
    "sending": "sent",
    "sent": "sent",
    "delivered": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
    "read": "delivered",
    "canceled": "failed",
}


def compute_signature(url: str, params: Iterable[tuple[str, str]], auth_token: str) -> str:
    """Twilio's signature of ``url`` and form ``params``
    (``RequestValidator.compute_signature``)."""
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    signed = url + "".join(
        name + value for name in sorted(values) for value in sorted(values[name])
    )
    return hmac_base64(auth_token, signed.encode("utf-8"), "sha1")


def body_hash(body: bytes) -> str:
    """The ``bodySHA256`` of a JSON body: its hex SHA-256."""
    return hashlib.sha256(body).hexdigest()


def url_variants(url: str) -> tuple[str, str]:
    """``url`` without its port and with it (the default port when it names none), as
    Twilio's ``RequestValidator`` tries both.

    Raises:
        WebhookRejected: the URL's port is not a number.
    """
    parsed = urlparse(url)
    try:
        port = parsed.port
    except ValueError:
        raise WebhookRejected("the webhook URL has an invalid port") from None
    return _without_port(parsed, port), _with_port(parsed, port)


def _without_port(parsed: ParseResult, port: int | None) -> str:
    if not port:
        return parsed.geturl()
    return parsed._replace(netloc=parsed.netloc.split(":")[0]).geturl()


def _with_port(parsed: ParseResult, port: int | None) -> str:
    if port:
        return parsed.geturl()
    default = 443 if parsed.scheme == "https" else 80
    return parsed._replace(netloc=f"{parsed.netloc}:{default}").geturl()


def is_valid(url: str, body: bytes, signature: str, auth_token: str) -> bool:
    """Whether ``signature`` is Twilio's for a request to ``url`` with ``body``
    (``RequestValidator.validate``).

    Raises:
        WebhookRejected: the URL's port is not a number, or a form body is not UTF-8.
    """
    body_hashes = parse_qs(urlparse(url).query).get(BODY_HASH_PARAMETER)
    if body_hashes:
        # A JSON body: the URL alone is signed, and the body must hash to bodySHA256.
        params: list[tuple[str, str]] = []
        body_ok = hmac.compare_digest(body_hash(body).encode(), body_hashes[0].encode())
    else:
        params = _form_pairs(body)
        body_ok = True
    candidates = [compute_signature(variant, params, auth_token) for variant in url_variants(url)]
    # Both URL forms are always computed: which one matched says nothing about timing.
    matched = signatures_match(signature, candidates)
    return body_ok and matched


def receive(
    request: WebhookRequest, credentials: Mapping[str, Any], context: WebhookContext
) -> list[WebhookEvent]:
    """Check a Twilio request's signature and read its message status callback.

    Raises:
        WebhookRejected: no auth token, a missing or bad signature, a callback for another
            account, or a body that is not a message status callback.
    """
    auth_token = credentials.get("auth_token")
    if not isinstance(auth_token, str) or not auth_token:
        raise WebhookRejected("the integration has no auth_token")
    signature = request.header(SIGNATURE_HEADER)
    if not signature:
        raise WebhookRejected("no X-Twilio-Signature header")
    if not is_valid(request.url, request.body, signature, auth_token):
        raise WebhookRejected("the X-Twilio-Signature does not match the URL and body")
    if BODY_HASH_PARAMETER in parse_qs(urlparse(request.url).query):
        fields = request.json()
        if not isinstance(fields, dict):
            raise WebhookRejected("the body is not a Twilio status callback")
    else:
        fields = request.form()
    return [read_status_callback(fields, str(credentials.get("account_sid", "")))]


def read_status_callback(fields: Mapping[str, Any], account_sid: str) -> WebhookEvent:
    """The event of a message status callback's fields.

    Raises:
        WebhookRejected: no ``MessageSid`` or ``MessageStatus``, or another account's.
    """
    sid, status = fields.get("MessageSid"), fields.get("MessageStatus")
    if not isinstance(sid, str) or not sid or not isinstance(status, str) or not status:
        raise WebhookRejected("the body is not a Twilio message status callback")
    if fields.get("AccountSid") != account_sid:
        raise WebhookRejected("the status callback is for another Twilio account")
    code = fields.get("ErrorCode")
    return WebhookEvent(
        dedupe_key=f"{sid}:{status}",
        type=f"message.{status}",
        object_id=sid,
        status=MESSAGE_STATUSES.get(status),
        provider_code=str(code) if code not in (None, "") else None,
    )


def _form_pairs(body: bytes) -> list[tuple[str, str]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookRejected("the body is not UTF-8 form data") from None
    return parse_qsl(text, keep_blank_values=True)


SCHEME = WebhookScheme(
    receive=receive,
    secret_fields=("auth_token",),
    signs_url=True,
    callback_parameter="StatusCallback",
)
