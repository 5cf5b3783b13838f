"""Plivo credential check: ``GET /v1/Account/{auth_id}/``, the account's own details.

Plivo authenticates with HTTP Basic (Auth ID as user name, Auth Token as password). Its API
answers JSON carrying an ``api_id``; errors read ``{"api_id": …, "error": "…"}``, though a
401 can also come back as a plain-text page ("Could not verify your access level for that
URL…"), which says nothing beyond its status, so the status line stands in for it. A 200
must be the account object ("Retrieve account details": ``auth_id``, ``account_type``,
``cash_credits``, …); anything else is not a proof of the credentials. The account body
holds the tenant's address and balance, so no part of it is copied into a message.
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


def account_path(auth_id: str) -> str | None:
    """``/v1/Account/{auth_id}/``, the account's resource (its messages are this path with
    ``Message/``); ``None`` when :func:`relaykit.path_segment` refuses the Auth ID as a path
    segment (``""``, ``.``, ``..``: no Plivo account has such an Auth ID)."""
    segment = path_segment(auth_id)
    return None if segment is None else f"/v1/Account/{segment}/"


def plivo_error_message(body: Any) -> str | None:
    """Plivo's own message in an error ``body`` (parsed JSON; ``None`` when not JSON): the
    ``error`` string of Plivo's error object, else a ``message`` string, else ``None``.

    A non-string ``error``, such as a map of invalid parameters, is not a message to show as
    it is: the status line stands in for it.
    """
    if not isinstance(body, dict):
        return None
    for key in ("error", "message"):
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


async def verify(credentials: Credentials, ctx: ProviderContext) -> VerificationResult:
    """Check a Plivo Auth ID and Auth Token by fetching the account's details.

    Args:
        credentials: ``auth_id``, ``auth_token`` and ``from_number`` (unused here: the
            account read says nothing about which numbers the account owns).
        ctx: the provider context; ``ctx.http`` is bound to Plivo's API base.

    Returns:
        accepted for the account object; rejected for 4xx answers and for an Auth ID no
        request can carry; transient for anything that says nothing about the credentials
        (429, 5xx, a 200 that is not the account object).
    """
    auth_id = str(credentials["auth_id"])
    auth_token = str(credentials["auth_token"])
    account = account_path(auth_id)
    if account is None:
        return VerificationResult.rejected("The Plivo auth_id is not a valid Auth ID")
    response = await ctx.http.get(account, auth=(auth_id, auth_token))
    classified = classify_response(
        response, error_message=plivo_error_message, secrets=(auth_token,)
    )
    if classified is not None:
        return classified
    body = json_body(response)
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("auth_id"), str)
        or not body["auth_id"]
    ):
        return VerificationResult.transient(
            "Plivo answered 200 without the account's details", status_code=response.status_code
        )
    return VerificationResult.accepted("Plivo accepted the credentials")
