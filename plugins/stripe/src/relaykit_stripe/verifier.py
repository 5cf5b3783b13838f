"""Stripe credential check: ``GET /v1/balance``, the cheapest authenticated read.

Stripe authenticates with the secret key as a bearer token and answers errors as
``{"error": {"message": …, "type": …}}``; its own messages mask the key
(``Invalid API Key provided: sk_test_****1234``). A 200 must be a balance object
(``"object": "balance"``, as in Stripe's fixtures); anything else is not a proof of the key.
"""

from __future__ import annotations

from typing import Any

from relaykit import (
    Credentials,
    ProviderContext,
    VerificationResult,
    classify_response,
    json_body,
)


def secret_values(credentials: Credentials) -> tuple[Any, ...]:
    """The credential values no message may carry: the secret key and the webhook secret."""
    return (credentials.get("secret_key"), credentials.get("webhook_secret"))


def stripe_error_message(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = body["error"].get("message")
        return message if isinstance(message, str) else None
    return None


async def verify(credentials: Credentials, ctx: ProviderContext) -> VerificationResult:
    response = await ctx.http.get(
        "/v1/balance", headers={"Authorization": f"Bearer {credentials['secret_key']}"}
    )
    classified = classify_response(
        response, error_message=stripe_error_message, secrets=secret_values(credentials)
    )
    if classified is not None:
        return classified
    body = json_body(response)
    if not isinstance(body, dict) or body.get("object") != "balance":
        return VerificationResult.transient(
            "Stripe answered 200 without a balance object", status_code=response.status_code
        )
    mode = "live" if body.get("livemode") else "test"
    return VerificationResult.accepted(f"Stripe accepted the secret key ({mode} mode)")
