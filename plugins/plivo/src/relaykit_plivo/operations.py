"""Plivo operations: ``send_sms`` and ``send_whatsapp``, both a Message create.

``POST /v1/Account/{auth_id}/Message/`` with HTTP Basic auth (Auth ID and Auth Token) and a
JSON body ``{"src": from, "dst": to, "text": body, "type": "sms"}``; WhatsApp is the same
call with ``"type": "whatsapp"`` and the same plain E.164 numbers. Plivo answers 202 with
``{"api_id": …, "message": "message(s) queued", "message_uuid": ["…"]}`` and errors as
``{"api_id": …, "error": "…"}`` (no error code).

With ``RELAYKIT_PUBLIC_URL`` set, the body also carries ``url``, the integration's webhook
URL (``ctx.webhook_url``), and ``method`` ``POST``: Plivo then posts each status change of
the message there, and relaykit records it (:mod:`relaykit_plivo.webhooks`).

Numbers are sent in E.164 as relaykit holds them (``+15550100000``): Plivo's examples often
drop the ``+`` but Plivo takes E.164. Plivo's Message API takes no idempotency key, so none is
sent: a retry after an ``unknown`` answer could send twice, which is why the core never
retries one.
"""

from __future__ import annotations

from relaykit import (
    Credentials,
    MessageResult,
    OperationContext,
    OperationOutcome,
    OperationResult,
    SendMessageInput,
    classify_operation_response,
    json_body,
)
from relaykit_plivo.verifier import account_path, plivo_error_message

#: What Plivo's 202 says of the message: queued for delivery ("message(s) queued").
QUEUED = "queued"


async def send_sms(
    payload: SendMessageInput, credentials: Credentials, ctx: OperationContext
) -> OperationResult:
    """Send a text message through Plivo.

    Args:
        payload: ``to``, ``body`` and an optional ``from`` (else the integration's number).
        credentials: ``auth_id``, ``auth_token`` and ``from_number``.
        ctx: the operation context; ``ctx.http`` is bound to Plivo's API base.

    Returns:
        succeeded with a :class:`MessageResult`; auth_failed, rejected or transient as
        Plivo's status says; unknown for a 2xx without a message UUID.
    """
    return await _send_message(payload, credentials, ctx, message_type="sms")


async def send_whatsapp(
    payload: SendMessageInput, credentials: Credentials, ctx: OperationContext
) -> OperationResult:
    """Send a WhatsApp message through Plivo (the Message resource, ``type`` ``whatsapp``).

    Args:
        payload: ``to``, ``body`` and an optional ``from`` (else the integration's number).
        credentials: ``auth_id``, ``auth_token`` and ``from_number``.
        ctx: the operation context; ``ctx.http`` is bound to Plivo's API base.

    Returns:
        as :func:`send_sms`.
    """
    return await _send_message(payload, credentials, ctx, message_type="whatsapp")


async def _send_message(
    payload: SendMessageInput,
    credentials: Credentials,
    ctx: OperationContext,
    *,
    message_type: str,
) -> OperationResult:
    auth_id = str(credentials["auth_id"])
    auth_token = str(credentials["auth_token"])
    sender = payload.from_ or str(credentials["from_number"])
    account = account_path(auth_id)
    if account is None:
        # Credentials no request can carry: the integration is unusable, not the message.
        return OperationResult.failed(
            OperationOutcome.AUTH_FAILED, "The Plivo auth_id is not a valid Auth ID"
        )
    message = {"src": sender, "dst": payload.to, "text": payload.body, "type": message_type}
    if ctx.webhook_url is not None:
        # Plivo posts the message's status changes here, signed with the auth token.
        message["url"] = ctx.webhook_url
        message["method"] = "POST"
    response = await ctx.http.post(f"{account}Message/", auth=(auth_id, auth_token), json=message)
    # Plivo's errors carry no code.
    classified = classify_operation_response(
        response, error_message=plivo_error_message, secrets=(auth_token,)
    )
    if classified is not None:
        return classified
    body = json_body(response)
    uuids = body.get("message_uuid") if isinstance(body, dict) else None
    if not isinstance(uuids, list) or not uuids or not isinstance(uuids[0], str) or not uuids[0]:
        # A 2xx: Plivo may have queued the message, so this is not a failure to fall back
        # from. Nothing of the body is repeated.
        return OperationResult.failed(
            OperationOutcome.UNKNOWN,
            f"Plivo answered {response.status_code} without a message_uuid; the message may "
            "have been sent",
            status_code=response.status_code,
        )
    return OperationResult.succeeded(
        MessageResult(
            provider_message_id=uuids[0], provider_status=QUEUED, to=payload.to, from_=sender
        ),
        status_code=response.status_code,
    )
