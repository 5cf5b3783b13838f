"""Twilio operations: ``send_sms`` and ``send_whatsapp``, both a Message resource create.

``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` with HTTP Basic auth (account SID
and auth token), form-encoded ``To``, ``From`` and ``Body`` (``CreateMessageRequest`` in
Twilio's OpenAPI, shared/provider-specs/twilio_api_v2010.json). WhatsApp goes through the same
resource with Twilio's channel addresses: ``whatsapp:`` before both numbers. Twilio answers
201 with the message resource (``api.v2010.account.message``), whose ``sid`` and ``status``
become the result, and errors as ``{"code": 21211, "message": …, "more_info": …, "status":
400}``.

With ``RELAYKIT_PUBLIC_URL`` set, the request also carries ``StatusCallback``, the
integration's webhook URL (``ctx.webhook_url``): Twilio then posts each status change of the
message there, and relaykit records it (:mod:`relaykit_twilio.webhooks`).

Twilio's Messages resource takes no idempotency key, so none is sent: a retry after an
``unknown`` answer could send the message twice, which is why the core never retries one.
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
from relaykit_twilio.verifier import account_path, twilio_error_code, twilio_error_message

#: Twilio's channel prefix for WhatsApp addresses (``whatsapp:+15552229999``).
WHATSAPP_PREFIX = "whatsapp:"


async def send_sms(
    payload: SendMessageInput, credentials: Credentials, ctx: OperationContext
) -> OperationResult:
    """Send a text message through Twilio.

    Args:
        payload: ``to``, ``body`` and an optional ``from`` (else the integration's number).
        credentials: ``account_sid``, ``auth_token`` and ``from_number``.
        ctx: the operation context; ``ctx.http`` is bound to Twilio's API base.

    Returns:
        succeeded with a :class:`MessageResult`; auth_failed, rejected or transient as
        Twilio's status says; unknown for a 2xx that is not a message resource.
    """
    return await _create_message(payload, credentials, ctx, channel="")


async def send_whatsapp(
    payload: SendMessageInput, credentials: Credentials, ctx: OperationContext
) -> OperationResult:
    """Send a WhatsApp message through Twilio: the same resource, ``whatsapp:`` addresses.

    Args:
        payload: ``to``, ``body`` and an optional ``from``, plain E.164 numbers.
        credentials: ``account_sid``, ``auth_token`` and ``from_number``.
        ctx: the operation context; ``ctx.http`` is bound to Twilio's API base.

    Returns:
        as :func:`send_sms`; the result's ``to`` and ``from`` are the plain E.164 numbers,
        without Twilio's ``whatsapp:`` prefix.
    """
    return await _create_message(payload, credentials, ctx, channel=WHATSAPP_PREFIX)


async def _create_message(
    payload: SendMessageInput, credentials: Credentials, ctx: OperationContext, *, channel: str
) -> OperationResult:
    account_sid = str(credentials["account_sid"])
    auth_token = str(credentials["auth_token"])
    sender = payload.from_ or str(credentials["from_number"])
    account = account_path(account_sid)
    if account is None:
        # Credentials no request can carry: the integration is unusable, not the message.
        return OperationResult.failed(
            OperationOutcome.AUTH_FAILED, "The Twilio account_sid is not a valid account SID"
        )
    form = {"To": channel + payload.to, "From": channel + sender, "Body": payload.body}
    if ctx.webhook_url is not None:
        # Twilio posts the message's status changes here, signed with the auth token.
        form["StatusCallback"] = ctx.webhook_url
    response = await ctx.http.post(
        f"{account}/Messages.json", auth=(account_sid, auth_token), data=form
    )
    classified = classify_operation_response(
        response,
        error_message=twilio_error_message,
        error_code=twilio_error_code,
        secrets=(auth_token,),
    )
    if classified is not None:
        return classified
    body = json_body(response)
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("sid"), str)
        or not body["sid"]
        or not isinstance(body.get("status"), str)
        or not body["status"]
    ):
        # A 2xx: Twilio may have created the message, so this is not a failure to fall back
        # from. Nothing of the body is repeated.
        return OperationResult.failed(
            OperationOutcome.UNKNOWN,
            f"Twilio answered {response.status_code} without a message resource (no sid or "
            "status); the message may have been sent",
            status_code=response.status_code,
        )
    return OperationResult.succeeded(
        MessageResult(
            provider_message_id=body["sid"],
            provider_status=body["status"],
            to=payload.to,
            from_=sender,
        ),
        status_code=response.status_code,
    )
