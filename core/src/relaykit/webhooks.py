"""Inbound webhooks, the SDK side: what a provider declares to check a webhook's signature and
turn its body into normalized events.

A provider that receives webhooks sets ``Provider.webhooks`` to a :class:`WebhookScheme`.
relaykit's receiver (``POST /webhooks/{integration_id}``) builds a :class:`WebhookRequest`
from what arrived (the URL as the provider called it, with ``RELAYKIT_PUBLIC_URL`` in front
when set), opens the integration's credentials, and calls ``scheme.receive(request,
credentials, context)``. ``receive`` either raises :class:`WebhookRejected` (a bad or missing
signature, a stale timestamp, a body the scheme does not expect) or returns the events the
body holds. It runs on the event loop: checking an HMAC and parsing a small body is cheap and
it must not do I/O.

Each event names the provider object it is about (``object_id``: a message id, a payment id)
and the status it means (``status``, from :data:`STATUS_RANK`). relaykit stores every event
once per integration and ``dedupe_key``, and applies it to the delivery attempt whose provider
object id matches, moving its ``delivery_status`` only forward (:func:`moves_forward`).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import msgspec

__all__ = [
    "STATUS_RANK",
    "WebhookContext",
    "WebhookEvent",
    "WebhookReceiver",
    "WebhookRejected",
    "WebhookRequest",
    "WebhookScheme",
    "hmac_base64",
    "hmac_hex",
    "moves_forward",
    "signatures_match",
]

#: Every delivery status (the names design.md fixes), by how far along it is. A succeeded
#: attempt starts at ``accepted`` (the provider took the request); events move it only to a
#: higher rank: a late ``sent`` never overwrites ``delivered``, a late ``failed`` never
#: overwrites a payment's ``succeeded`` (a payment that failed and was then paid with another
#: method does move on to ``succeeded``), ``refunded`` comes after ``succeeded``. A scheme maps
#: its provider's own statuses onto these (a WhatsApp ``read`` is ``delivered``).
STATUS_RANK: Mapping[str, int] = {
    "accepted": 0,
    "sent": 1,
    "undelivered": 2,
    "failed": 2,
    "delivered": 3,
    "succeeded": 3,
    "refunded": 4,
}
#: What a succeeded attempt's delivery status is before any event: the provider accepted it.
ACCEPTED = "accepted"


def moves_forward(current: str | None, new: str) -> bool:
    """Whether an attempt at ``current`` takes ``new`` (unknown statuses never apply)."""
    if new not in STATUS_RANK:
        return False
    return current is None or STATUS_RANK[new] > STATUS_RANK.get(current, -1)


class WebhookRejected(Exception):
    """The webhook is not one to accept. The message is for relaykit's log: it must never
    hold a secret, a signature or the body."""


class WebhookRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A webhook as it arrived.

    Attributes:
        method: ``POST`` (as sent).
        url: the full URL as the provider called it: ``RELAYKIT_PUBLIC_URL`` (when set)
            followed by the path and the query string, else the URL the server saw.
        headers: header name (lower case) -> value; a repeated header's values joined by
            ``", "``.
        body: the raw bytes, exactly as received (signatures are over them).
    """

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def form(self) -> dict[str, str]:
        """The body as ``application/x-www-form-urlencoded`` (the last of a repeated key).

        Raises:
            WebhookRejected: the body is not valid UTF-8.
        """
        try:
            text = self.body.decode("utf-8")
        except UnicodeDecodeError:
            raise WebhookRejected("the body is not UTF-8 form data") from None
        return dict(parse_qsl(text, keep_blank_values=True))

    def json(self) -> Any:
        """The body as JSON.

        Raises:
            WebhookRejected: the body is not JSON.
        """
        try:
            return msgspec.json.decode(self.body)
        except (msgspec.DecodeError, RecursionError):
            raise WebhookRejected("the body is not JSON") from None


class WebhookContext(msgspec.Struct, frozen=True, kw_only=True):
    """What relaykit tells a scheme besides the request: the time now (for timestamped
    schemes' tolerance), and the tolerance itself in seconds."""

    now: dt.datetime
    tolerance: float = 300.0


class WebhookEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One normalized event.

    Attributes:
        dedupe_key: the provider's event id, or a key that is the same for every delivery of
            the same event (e.g. ``MessageSid:MessageStatus``) and differs between events.
        type: the provider's event type (``payment_intent.succeeded``,
            ``message.delivered``).
        occurred_at: when it happened, as the provider says (``None`` when it does not).
        object_id: the provider object it is about (a message id, a payment id), as an
            operation's result names it; ``None`` when it is about nothing relaykit sends.
        status: the status it means, a key of :data:`STATUS_RANK`; ``None``: stored only.
        provider_code: the provider's error code, when the event carries one.
    """

    dedupe_key: str
    type: str
    occurred_at: dt.datetime | None = None
    object_id: str | None = None
    status: str | None = None
    provider_code: str | None = None


WebhookReceiver = Callable[[WebhookRequest, Mapping[str, Any], WebhookContext], list[WebhookEvent]]


class WebhookScheme(msgspec.Struct, frozen=True, kw_only=True):
    """How a provider's webhooks are checked and read.

    Attributes:
        receive: ``(request, credentials, context) -> list[WebhookEvent]``; raises
            :class:`WebhookRejected`. ``credentials`` are the integration's, opened.
        secret_fields: the credential fields the check needs (``("webhook_secret",)``); an
            integration without them cannot receive, and its webhooks are rejected.
        signs_url: whether the signature covers the URL (Twilio, Plivo): then the URL must
            be the one the provider called, which ``RELAYKIT_PUBLIC_URL`` gives behind a proxy.
        callback_parameter: for schemes whose provider takes a per-request callback URL
            (Twilio's ``StatusCallback``), the name of that parameter, for the docs.
    """

    receive: WebhookReceiver
    secret_fields: tuple[str, ...]
    signs_url: bool = False
    callback_parameter: str | None = None


# -- helpers for schemes ----------------------------------------------------------------------


def hmac_hex(secret: str | bytes, message: bytes, digest: str = "sha256") -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, message, getattr(hashlib, digest)).hexdigest()


def hmac_base64(secret: str | bytes, message: bytes, digest: str = "sha256") -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return base64.b64encode(hmac.new(key, message, getattr(hashlib, digest)).digest()).decode()


def signatures_match(expected: str, candidates: list[str] | tuple[str, ...]) -> bool:
    """Whether any candidate equals ``expected``, each compared in constant time."""
    found = False
    for candidate in candidates:
        found |= hmac.compare_digest(expected.encode(), candidate.encode())
    return found
