"""Plivo's webhooks: the ``X-Plivo-Signature`` checks and message status callbacks.

Plivo signs the requests it makes with the account's auth token, HMAC-SHA256, base64, with a
random nonce per request. Two schemes, as plivo-python implements them:

* V3 (``X-Plivo-Signature-V3``, ``X-Plivo-Signature-V3-Nonce``;
  ``plivo/utils/signature_v3.py``, ``validate_v3_signature``): the signed string is the URL
  without its query, then, for a POST, ``?`` and the query's parameters sorted
  (``k=v&k=v``) and ``.`` when there are any, then the body's form parameters sorted, each
  name followed by its value with no separator; then ``.`` and the nonce. A GET signs the
  URL with its sorted query alone. With several active auth tokens the header holds one
  signature per token, comma-separated: any match passes. The string is signed as UTF-8,
  as plivo-go and plivo-python (4.63) compute it. ``X-Plivo-Signature-Ma-V3`` is
  the same string signed with the main account's token, so it passes too when the
  integration holds that token.
* V2 (``X-Plivo-Signature-V2``, ``X-Plivo-Signature-V2-Nonce``; ``validate_signature`` in
  ``plivo/utils/__init__.py``): the URL without its query, followed by the nonce. It does
  not cover the body, so it is checked only when no V3 header came: V3, when present,
  decides. Because a captured V2 signature would pass with any body, an event accepted on
  V2 alone is deduplicated by its nonce (``v2-nonce:<nonce>``), not by its body: a replay
  of the signature, whatever body it carries, is a duplicate of the first delivery and is
  not applied.

The signatures cover the URL: behind a proxy, relaykit must see the URL Plivo called, which
``RELAYKIT_PUBLIC_URL`` gives. Sends carry that URL as ``url`` (with ``method`` ``POST``;
:mod:`relaykit_plivo.operations`), so the status callbacks come back to relaykit.

A message callback (``MessageUUID``, ``Status``, ``ErrorCode``) becomes one event about the
message ``MessageUUID``; ``MessageUUID:Status`` is the dedupe key, the same on every retry of
one status.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlparse, urlunparse

from relaykit import (
    WebhookContext,
    WebhookEvent,
    WebhookRejected,
    WebhookRequest,
    WebhookScheme,
    hmac_base64,
    signatures_match,
)

V3_HEADER = "X-Plivo-Signature-V3"
MAIN_ACCOUNT_V3_HEADER = "X-Plivo-Signature-Ma-V3"
V3_NONCE_HEADER = "X-Plivo-Signature-V3-Nonce"
V2_HEADER = "X-Plivo-Signature-V2"
V2_NONCE_HEADER = "X-Plivo-Signature-V2-Nonce"

#: Plivo's message statuses -> relaykit's delivery statuses (``rejected``: Plivo refused to
#: send it, a failure). Others are stored only.
MESSAGE_STATUSES: Mapping[str, str] = {
    "queued": "accepted",
    "sent": "sent",
    "delivered": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
    "rejected": "failed",
    "read": "delivered",
}

Params = Mapping[str, list[str]]


def _base_url(url: str) -> str:
    """The URL without its query and fragment (``urlunparse`` of scheme, host and path)."""
    parsed = urlparse(url)
    return urlunparse((parsed.scheme, parsed.netloc, parsed.path, "", "", ""))


def _sorted_query(params: Params) -> str:
    return "&".join(f"{name}={value}" for name in sorted(params) for value in sorted(params[name]))


def _sorted_params(params: Params) -> str:
    return "".join(f"{name}{value}" for name in sorted(params) for value in sorted(params[name]))


def v3_signed_string(method: str, url: str, params: Params) -> str:
    """What V3 signs before the nonce (``construct_get_url`` / ``construct_post_url``).

    ``params`` are the body's form parameters (a POST); a GET's are in its query.
    """
    base = _base_url(url)
    query = _sorted_query(parse_qs(urlparse(url).query, keep_blank_values=True))
    if method.upper() == "GET" or not params:
        return f"{base}?{query}" if query else base
    return (
        f"{base}?{query}.{_sorted_params(params)}" if query else f"{base}?{_sorted_params(params)}"
    )


def v3_signature(auth_token: str, method: str, url: str, params: Params, nonce: str) -> str:
    """Plivo's V3 signature (``get_signature_v3``), of the signed string's UTF-8 bytes."""
    signed = f"{v3_signed_string(method, url, params)}.{nonce}"
    return hmac_base64(auth_token, signed.encode("utf-8"))


def v2_signature(auth_token: str, url: str, nonce: str) -> str:
    """Plivo's V2 signature (``validate_signature``): the URL without its query, the nonce."""
    return hmac_base64(auth_token, (_base_url(url) + nonce).encode("utf-8"))


def is_valid(request: WebhookRequest, auth_token: str) -> bool:
    """Whether the request carries a Plivo signature made with ``auth_token``: V3 when its
    headers came, else V2.

    Raises:
        WebhookRejected: no signature headers, or a POST body that is not UTF-8 form data.
    """
    return _signed_by(request, auth_token) is not None


def _signed_by(request: WebhookRequest, auth_token: str) -> str | None:
    """``"v3"`` or ``"v2"``: the scheme whose signature matched; ``None`` when it did not."""
    v3_nonce = request.header(V3_NONCE_HEADER)
    v3 = [request.header(V3_HEADER), request.header(MAIN_ACCOUNT_V3_HEADER)]
    if v3_nonce and any(v3):
        params = _form(request.body) if request.method.upper() != "GET" else {}
        expected = v3_signature(auth_token, request.method, request.url, params, v3_nonce)
        candidates = [s.strip() for header in v3 if header for s in header.split(",")]
        return "v3" if signatures_match(expected, candidates) else None
    v2, v2_nonce = request.header(V2_HEADER), request.header(V2_NONCE_HEADER)
    if v2 and v2_nonce:
        matched = signatures_match(v2_signature(auth_token, request.url, v2_nonce), [v2])
        return "v2" if matched else None
    raise WebhookRejected("no X-Plivo-Signature-V3 or -V2 header with its nonce")


def receive(
    request: WebhookRequest, credentials: Mapping[str, Any], context: WebhookContext
) -> list[WebhookEvent]:
    """Check a Plivo request's signature and read its message callback.

    Raises:
        WebhookRejected: no auth token, missing or bad signatures, or a body that is not a
            message callback.
    """
    auth_token = credentials.get("auth_token")
    if not isinstance(auth_token, str) or not auth_token:
        raise WebhookRejected("the integration has no auth_token")
    scheme = _signed_by(request, auth_token)
    if scheme is None:
        raise WebhookRejected("the X-Plivo-Signature does not match the URL and body")
    # V2 does not sign the body: the signed nonce, not the body, says which delivery this
    # is, so a replayed signature with another body is a duplicate.
    nonce = request.header(V2_NONCE_HEADER) if scheme == "v2" else None
    return [read_message_callback(request.form(), v2_nonce=nonce)]


def read_message_callback(
    fields: Mapping[str, str], *, v2_nonce: str | None = None
) -> WebhookEvent:
    """The event of a message callback's fields (deduplicated by ``v2_nonce`` when given).

    Raises:
        WebhookRejected: no ``MessageUUID`` or ``Status``.
    """
    uuid, status = fields.get("MessageUUID"), fields.get("Status")
    if not uuid or not status:
        raise WebhookRejected("the body is not a Plivo message callback")
    code = fields.get("ErrorCode")
    return WebhookEvent(
        dedupe_key=f"v2-nonce:{v2_nonce}" if v2_nonce else f"{uuid}:{status}",
        type=f"message.{status}",
        object_id=uuid,
        status=MESSAGE_STATUSES.get(status),
        provider_code=code or None,
    )


def _form(body: bytes) -> dict[str, list[str]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookRejected("the body is not UTF-8 form data") from None
    return parse_qs(text, keep_blank_values=True)


SCHEME = WebhookScheme(
    receive=receive, secret_fields=("auth_token",), signs_url=True, callback_parameter="url"
)
