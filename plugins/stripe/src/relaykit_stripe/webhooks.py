"""Stripe's webhooks: the ``Stripe-Signature`` check and the events relaykit applies.

Stripe signs each delivery with the endpoint's signing secret (``whsec_…``, the
integration's ``webhook_secret``): the header is ``t=<unix time>,v1=<hex>[,v1=<hex>…]
[,v0=<hex>]``, and each ``v1`` is the hex HMAC-SHA256 of ``f"{t}."`` followed by the raw
body. While a secret is being rolled Stripe sends one ``v1`` per active secret, so any
match passes; ``v0`` (test-mode, legacy) is never accepted. The timestamp must be within the
tolerance of now, either way, so a captured delivery cannot be replayed later. This follows
Stripe's own ``WebhookSignature.verify_header`` (stripe-python ``stripe/_webhook.py``), which
checks the signature before the age; relaykit also refuses a timestamp from the future.

The body is an ``event`` (``id``, ``type``, ``created``, ``data.object``); its ``id`` is the
dedupe key, the same on each of Stripe's retries. Three types mean a payment's status:

* ``payment_intent.succeeded``: the PaymentIntent (``data.object.id``) ``succeeded``;
* ``payment_intent.payment_failed``: ``failed``, with the error's ``decline_code``
  or ``code`` as the provider code (as the operations report Stripe's errors);
* ``charge.refunded``: the charge's PaymentIntent (``data.object.payment_intent``)
  ``refunded`` when the charge is fully refunded (``refunded: true``); a partial refund
  is stored and not applied, since the payment still stands.

Any other type is stored and not applied.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from relaykit import (
    WebhookContext,
    WebhookEvent,
    WebhookRejected,
    WebhookRequest,
    WebhookScheme,
    hmac_hex,
    signatures_match,
)

SIGNATURE_HEADER = "Stripe-Signature"
#: A Unix time in seconds; twelve digits reach the year 33658, and bound what is parsed.
TIMESTAMP = re.compile(r"^[0-9]{1,12}$")


def signature_header(body: bytes, secret: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header Stripe sends for ``body`` signed at ``timestamp``
    (for tests and stand-ins: Stripe's ``generate_signature_header``)."""
    return f"t={timestamp},v1={hmac_hex(secret, f'{timestamp}.'.encode() + body)}"


def parse_signature_header(header: str) -> tuple[int, list[str]]:
    """``(t, [v1 signatures])`` from a ``Stripe-Signature`` header.

    Raises:
        WebhookRejected: no ``t``, a ``t`` that is not a Unix time, or no ``v1``.
    """
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            timestamps.append(value)
        elif key == "v1":
            signatures.append(value)
    if not timestamps:
        raise WebhookRejected("the Stripe-Signature header has no timestamp (t=)")
    # Stripe's own parser takes the first t.
    if not TIMESTAMP.match(timestamps[0]):
        raise WebhookRejected("the Stripe-Signature timestamp is not a Unix time")
    if not signatures:
        raise WebhookRejected("the Stripe-Signature header has no v1 signature")
    return int(timestamps[0]), signatures


def receive(
    request: WebhookRequest, credentials: Mapping[str, Any], context: WebhookContext
) -> list[WebhookEvent]:
    """Check a Stripe delivery's signature and age, and read its event.

    Raises:
        WebhookRejected: no ``webhook_secret`` configured, a missing or bad signature, a
            timestamp outside the tolerance, or a body that is not a Stripe event.
    """
    secret = credentials.get("webhook_secret")
    if not isinstance(secret, str) or not secret:
        raise WebhookRejected(
            "the integration has no webhook_secret: set the endpoint's signing secret to "
            "receive Stripe's webhooks"
        )
    verify_signature(request.body, request.header(SIGNATURE_HEADER), secret, context)
    return [read_event(request.json())]


def verify_signature(body: bytes, header: str | None, secret: str, context: WebhookContext) -> None:
    """Check a ``Stripe-Signature`` header against the raw body (``verify_header``).

    Raises:
        WebhookRejected: no header, a malformed one, no ``v1`` that matches, or a timestamp
            outside ``context.tolerance`` of ``context.now``.
    """
    if not header:
        raise WebhookRejected("no Stripe-Signature header")
    timestamp, signatures = parse_signature_header(header)
    expected = hmac_hex(secret, f"{timestamp}.".encode() + body)
    if not signatures_match(expected, signatures):
        raise WebhookRejected("no Stripe-Signature v1 signature matches the body")
    age = context.now.timestamp() - timestamp
    if abs(age) > context.tolerance:
        raise WebhookRejected(
            f"the Stripe-Signature timestamp is {abs(age):.0f} s "
            f"{'old' if age > 0 else 'ahead'}, outside the {context.tolerance:.0f} s tolerance"
        )


def read_event(event: Any) -> WebhookEvent:
    """The normalized event of a Stripe ``event`` object.

    Raises:
        WebhookRejected: it is not an event (no ``id`` or ``type``), or an event relaykit
            applies names no object.
    """
    if not isinstance(event, dict):
        raise WebhookRejected("the body is not a Stripe event object")
    event_id, event_type = event.get("id"), event.get("type")
    if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str):
        raise WebhookRejected("the body is not a Stripe event (no id or type)")
    occurred_at = _time(event.get("created"))
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if event_type in ("payment_intent.succeeded", "payment_intent.payment_failed"):
        intent_id = _id(obj)
        if intent_id is None:
            raise WebhookRejected(f"the {event_type} event names no PaymentIntent")
        failed = event_type == "payment_intent.payment_failed"
        return WebhookEvent(
            dedupe_key=event_id,
            type=event_type,
            occurred_at=occurred_at,
            object_id=intent_id,
            status="failed" if failed else "succeeded",
            provider_code=_error_code(obj) if failed else None,
        )
    if event_type == "charge.refunded":
        if not isinstance(obj, dict) or _id(obj) is None:
            raise WebhookRejected("the charge.refunded event names no charge")
        intent_id = _id(obj.get("payment_intent"))
        # A partial refund leaves the payment standing: stored, not applied.
        applies = intent_id is not None and obj.get("refunded") is not False
        return WebhookEvent(
            dedupe_key=event_id,
            type=event_type,
            occurred_at=occurred_at,
            object_id=intent_id,
            status="refunded" if applies else None,
        )
    return WebhookEvent(dedupe_key=event_id, type=event_type, occurred_at=occurred_at)


def _id(value: Any) -> str | None:
    """An object's id, whether Stripe sent the id or the expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _error_code(intent: Any) -> str | None:
    error = intent.get("last_payment_error") if isinstance(intent, dict) else None
    if not isinstance(error, dict):
        return None
    code = error.get("decline_code") or error.get("code")
    return code if isinstance(code, str) else None


def _time(created: Any) -> dt.datetime | None:
    if not isinstance(created, int) or isinstance(created, bool):
        return None
    try:
        return dt.datetime.fromtimestamp(created, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None


SCHEME = WebhookScheme(receive=receive, secret_fields=("webhook_secret",))
