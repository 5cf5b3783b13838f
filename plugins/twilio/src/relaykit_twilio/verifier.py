"""Twilio credential check: ``GET /2010-04-01/Accounts/{AccountSid}.json``.

Fetching the account itself is Twilio's cheapest authenticated read. Twilio authenticates
with HTTP Basic (account SID as user name, auth token as password; the ``accountSid_authToken``
scheme of Twilio's OpenAPI, shared/provider-specs/twilio_api_v2010.json) and answers errors as
``{"code": 20003, "message": "Authenticate", "more_info": …, "status": 401}``.

A 200 must be an account (``api.v2010.account``: a ``sid`` and a ``status`` of
``account_enum_status``); only an ``active`` account proves the credentials usable, while
``suspended`` and ``closed`` are final. The account body carries the account's own
``auth_token`` (and its ``friendly_name``, by default an e-mail address), so no part of a
200 body is ever copied into a message: messages name only values this module chose.
"""

from __future__ import annotations

from typing import Any

from relaykit import (
    Credentials,
    ProviderContext,
    VerificationResult,
    classify_response,
    json_body,
    path_segment,
)

#: ``account_enum_status`` values that will not come back by themselves: rejected, final.
FINAL_ACCOUNT_STATUSES = ("suspended", "closed")


def account_path(account_sid: str) -> str | None:
    """``/2010-04-01/Accounts/{sid}``, under which Twilio keeps the account's resources (the
    account is this path with ``.json``, its messages with ``/Messages.json``); ``None``
    when :func:`relaykit.path_segment` refuses the SID as a path segment (``""``, ``.``,
    ``..``: no Twilio account has such a SID)."""
    segment = path_segment(account_sid)
    return None if segment is None else f"/2010-04-01/Accounts/{segment}"


def twilio_error_code(body: Any) -> str | None:
    """The numeric ``code`` of Twilio's error object (``21211``), as a string.

    Args:
        body: the parsed JSON body, or ``None`` when the body was not JSON.

    Returns:
        ``"21211"`` for an integer ``code``; ``None`` for any other shape (a JSON ``true``
        is an int to Python, not an error code).
    """
    if not isinstance(body, dict):
        return None
    code = body.get("code")
    if isinstance(code, int) and not isinstance(code, bool):
        return str(code)
    return None


def twilio_error_message(body: Any) -> str | None:
    """Twilio's own message in an error body, with its error code when it gave one.

    Args:
        body: the parsed JSON body, or ``None`` when the body was not JSON.

    Returns:
        ``"Authenticate (Twilio error 20003)"`` for Twilio's documented error object, the
        bare message when there is no numeric code, ``None`` for any other shape.
    """
    if not isinstance(body, dict):
        return None
    message = body.get("message")
    if not isinstance(message, str) or not message.strip():
        return None
    code = twilio_error_code(body)
    if code is not None:
        return f"{message.strip()} (Twilio error {code})"
    return message.strip()


async def verify(credentials: Credentials, ctx: ProviderContext) -> VerificationResult:
    """Check a Twilio account SID and auth token by fetching the account.

    Args:
        credentials: ``account_sid``, ``auth_token`` and ``from_number`` (unused here:
            the account read says nothing about which numbers the account owns).
        ctx: the provider context; ``ctx.http`` is bound to Twilio's API base.

    Returns:
        accepted for an ``active`` account; rejected for 4xx answers, for a ``suspended``
        or ``closed`` account and for a SID no request can carry; transient for anything
        that says nothing about the credentials (429, 5xx, a 200 that is not an account).
    """
    account_sid = str(credentials["account_sid"])
    auth_token = str(credentials["auth_token"])
    account = account_path(account_sid)
    if account is None:
        return VerificationResult.rejected("The Twilio account_sid is not a valid account SID")
    response = await ctx.http.get(f"{account}.json", auth=(account_sid, auth_token))
    classified = classify_response(
        response, error_message=twilio_error_message, secrets=(auth_token,)
    )
    if classified is not None:
        return classified
    body = json_body(response)
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("sid"), str)
        or not body["sid"]
        or not isinstance(body.get("status"), str)
    ):
        return VerificationResult.transient(
            "Twilio answered 200 without an account (no sid or status)",
            status_code=response.status_code,
        )
    status = body["status"]
    if status in FINAL_ACCOUNT_STATUSES:
        # The credentials authenticate, but the account cannot send: final until the tenant
        # acts in Twilio's Console, so retrying would only hide it.
        return VerificationResult.rejected(
            f"The Twilio account is {status}: it cannot send messages",
            status_code=response.status_code,
        )
    if status != "active":
        # A status Twilio's OpenAPI does not list yet: not a proof either way, so check again
        # later rather than fail an account that may be fine. Its value is not repeated.
        return VerificationResult.transient(
            "Twilio answered with an account status relaykit does not know",
            status_code=response.status_code,
        )
    # Worth telling the tenant: a trial account only sends to numbers verified in its Console.
    kind = body.get("type")
    if kind == "Trial":
        return VerificationResult.accepted(
            "Twilio accepted the credentials (trial account: it sends only to verified numbers)"
        )
    if kind == "Full":
        return VerificationResult.accepted("Twilio accepted the credentials (full account)")
    return VerificationResult.accepted("Twilio accepted the credentials")
