"""Stripe operations: PaymentIntents create and retrieve, Refunds create.

Requests are form-encoded with the secret key as a bearer token, as Stripe's API takes them.
Writes carry ``Idempotency-Key``: the operation's key, the same on every try, so a retried
create is not a second payment. Bodies are read as Stripe documents them (the
``payment_intent`` and ``refund`` objects of shared/provider-specs/stripe_fixtures3.json).
"""

from __future__ import annotations

from typing import Any

import httpx

from relaykit import (
    OPERATION_ID_METADATA_KEY,
    Credentials,
    InitiatePaymentInput,
    OperationContext,
    OperationOutcome,
    OperationResult,
    PaymentResult,
    ProcessRefundInput,
    RefundResult,
    VerifyPaymentInput,
    classify_operation_response,
    json_body,
    path_segment,
)
from relaykit_stripe.verifier import secret_values, stripe_error_message


def stripe_error_code(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        code = error.get("decline_code") or error.get("code")
        return code if isinstance(code, str) else None
    return None


def _headers(credentials: Credentials, ctx: OperationContext, *, write: bool) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {credentials['secret_key']}"}
    if write:
        headers["Idempotency-Key"] = ctx.idempotency_key
    return headers


def _classify(response: httpx.Response, credentials: Credentials) -> OperationResult | None:
    return classify_operation_response(
        response,
        error_message=stripe_error_message,
        error_code=stripe_error_code,
        secrets=secret_values(credentials),
    )


def _payment(body: Any, status_code: int) -> OperationResult:
    if not isinstance(body, dict) or body.get("object") != "payment_intent":
        return OperationResult.failed(
            OperationOutcome.UNKNOWN,
            "Stripe answered without a payment_intent object",
            status_code=status_code,
        )
    return OperationResult.succeeded(
        PaymentResult(
            provider_payment_id=str(body["id"]),
            provider_status=str(body["status"]),
            amount=int(body["amount"]),
            currency=str(body["currency"]),
            client_secret=body.get("client_secret"),
        ),
        status_code=status_code,
    )


async def initiate_payment(
    payload: InitiatePaymentInput, credentials: Credentials, ctx: OperationContext
) -> OperationResult:
    form: dict[str, Any] = {"amount": payload.amount, "currency": payload.currency}
    if payload.description:
        form["description"] = payload.description
    for key, value in (payload.metadata or {}).items():
        form[f"metadata[{key}]"] = value
    form[f"metadata[{OPERATION_ID_METADATA_KEY}]"] = ctx.operation_id
    response = await ctx.http.post(
        "/v1/payment_intents", data=form, headers=_headers(credentials, ctx, write=True)
    )
    return _classify(response, credentials) or _payment(json_body(response), response.status_code)


async def verify_payment(
    payload: VerifyPaymentInput, credentials: Credentials, ctx: OperationContext
) -> OperationResult:
    segment = path_segment(payload.payment_id)
    if segment is None:
        # "." or "..": no PaymentIntent has such an id, and as a path it would climb to /v1/.
        return OperationResult.failed(
            OperationOutcome.REJECTED, "The payment_id is not a Stripe PaymentIntent id"
        )
    response = await ctx.http.get(
        f"/v1/payment_intents/{segment}", headers=_headers(credentials, ctx, write=False)
    )
    return _classify(response, credentials) or _payment(json_body(response), response.status_code)


async def process_refund(
    payload: ProcessRefundInput, credentials: Credentials, ctx: OperationContext
) -> OperationResult:
    # Stripe refunds a PaymentIntent (pi_…) or a Charge (ch_…); the id says which.
    target = "charge" if payload.payment_id.startswith(("ch_", "py_")) else "payment_intent"
    form: dict[str, Any] = {target: payload.payment_id}
    if payload.amount is not None:
        form["amount"] = payload.amount
    response = await ctx.http.post(
        "/v1/refunds", data=form, headers=_headers(credentials, ctx, write=True)
    )
    classified = _classify(response, credentials)
    if classified is not None:
        return classified
    body = json_body(response)
    if not isinstance(body, dict) or body.get("object") != "refund":
        return OperationResult.failed(
            OperationOutcome.UNKNOWN,
            "Stripe answered without a refund object",
            status_code=response.status_code,
        )
    return OperationResult.succeeded(
        RefundResult(
            provider_refund_id=str(body["id"]),
            provider_status=str(body["status"]),
            payment_id=str(body.get("payment_intent") or body.get("charge") or payload.payment_id),
            amount=int(body["amount"]),
        ),
        status_code=response.status_code,
    )
