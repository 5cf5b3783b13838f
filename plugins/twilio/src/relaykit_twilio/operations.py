"""Twilio operations: ``send_sms`` and ``send_whatsapp``, both a Message resource create.

``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` with HTTP Basic auth (account SID
and auth token), form-encoded ``To``, ``From`` and ``Body`` (``CreateMessageRequest`` in
Twilio's OpenAPI, shared/provider-specs/twilio_api_v2010.json). WhatsApp goes through the same
resource with Twilio's channel addresses: ``whatsapp:`` before both numbers. Twilio answers
201 with the message resource (``api.v2010.account.message``), whose ``sid`` and ``status``
become the result, and errors as ``{"code": 21211, "message": …, "more_info": …, "status":
400}``.

Twilio's Messages resource takes no idempotency key, so none is sent: a retry after an
``unknown`` answer could send the message twice, which is why the core never retries one.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from relaykit import Credentials
from relaykit.capabilities import MessageResult, SendMessageInput
from relaykit.operations import (
    OperationContext,
    OperationOutcome,
    OperationResult,
    classify_operation_response,
)
from relaykit.verification import json_body, redact
from relaykit_twilio.verifier import twilio_error_code, twilio_error_message

#: Twilio's channel prefix for WhatsApp addresses (``whatsapp:+15552229999``).
WHATSAPP_PREFIX = "whatsapp:"


def messages_path(account_sid: str) -> str | None:
    """The path of the account's Messages list, or ``None`` if no account can have it.

    Args:
        account_sid: the SID as the tenant entered it.

    Returns:
        ``/2010-04-01/Accounts/{sid}/Messages.json`` with the SID percent-quoted, so that a
        ``/``, ``?`` or ``#`` stays inside its path segment. ``None`` for ``""``, ``.`` and
        ``..``: as a whole segment those are removed by URL normalisation (``..`` would post
        to ``/2010-04-01/Messages.json``), and no Twilio account has such a SID.
    """
    if account_sid in ("", ".", ".."):
        return None
    return f"/2010-04-01/Accounts/{quote(account_sid, safe='')}/Messages.json"


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
    path = messages_path(account_sid)
    if path is None:
        # Credentials no request can carry: the integration is unusable, not the message.
        return OperationResult.failed(
            OperationOutcome.AUTH_FAILED, "The Twilio account_sid is not a valid account SID"
        )
    response = await ctx.http.post(
        path,
        auth=(account_sid, auth_token),
        data={"To": channel + payload.to, "From": channel + sender, "Body": payload.body},
    )
    classified = _classify(response, auth_token)
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


def _classify(response: httpx.Response, auth_token: str) -> OperationResult | None:
    # run_operation redacts the secrets it is given too; this keeps the token out of the
    # message even for a caller that passes none.
    def error_message(body: Any) -> str | None:
        message = twilio_error_message(body)
        return None if message is None else redact(message, [auth_token])

    return classify_operation_response(
        response, error_message=error_message, error_code=twilio_error_code
    )
