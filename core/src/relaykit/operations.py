"""Operations: what a provider's handler answers, and the safe runner the dispatcher uses.

A handler is ``async (payload, credentials, ctx) -> OperationResult``; ``payload`` is the
capability's input Struct (see :mod:`relaykit.capabilities`), ``ctx`` an
:class:`OperationContext`. It answers one of:

* ``succeeded``, with the capability's output Struct;
* ``transient``: the provider did not do it and another may (5xx, 429, refused connection):
  the dispatcher moves on to the fallback;
* ``auth_failed``: the provider refused the credentials (401/403): the integration moves to
  ``error`` and the dispatcher moves on to the fallback;
* ``rejected``: the provider refused the request itself (a bad number, a declined card):
  another provider would refuse it too, so the dispatcher stops and reports it;
* ``unknown``: the request was sent and no answer came (a read timeout, a dropped
  connection): it may have been done. The dispatcher does not try another provider, which
  could deliver the message or take the payment twice, and reports it.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import httpx
import msgspec

from relaykit.provider_http import (
    MAX_MESSAGE_LENGTH,
    ProviderContext,
    error_text,
    json_body,
    parse_retry_after,
    status_line,
)
from relaykit.providers import Credentials
from relaykit.redaction import redact

logger = logging.getLogger("relaykit.operations")

#: A provider's error code is kept to this many characters (the delivery attempt's column).
MAX_PROVIDER_CODE_LENGTH = 100


class OperationOutcome(enum.StrEnum):
    SUCCEEDED = "succeeded"
    TRANSIENT = "transient"
    AUTH_FAILED = "auth_failed"
    REJECTED = "rejected"
    UNKNOWN = "unknown"


class OperationResult(msgspec.Struct, frozen=True, kw_only=True):
    outcome: OperationOutcome
    result: Any = None
    message: str = ""
    status_code: int | None = None
    provider_code: str | None = None
    retry_after: float | None = None

    @classmethod
    def succeeded(
        cls, result: msgspec.Struct, *, status_code: int | None = None
    ) -> OperationResult:
        return cls(outcome=OperationOutcome.SUCCEEDED, result=result, status_code=status_code)

    @classmethod
    def failed(
        cls,
        outcome: OperationOutcome,
        message: str,
        *,
        status_code: int | None = None,
        provider_code: str | None = None,
        retry_after: float | None = None,
    ) -> OperationResult:
        return cls(
            outcome=outcome,
            message=message,
            status_code=status_code,
            provider_code=provider_code,
            retry_after=retry_after,
        )


class OperationContext(ProviderContext):
    """:class:`ProviderContext` plus what one operation carries.

    ``idempotency_key`` is the same across every try of one operation (the client's
    ``Idempotency-Key``, or the operation id): a provider that supports keys gets it, so a
    retried request is not done twice. ``webhook_url`` is this integration's webhook URL
    (``RELAYKIT_PUBLIC_URL`` + ``/webhooks/<integration_id>``), for providers that take a
    per-request status callback; ``None`` when ``RELAYKIT_PUBLIC_URL`` is not set.
    """

    __slots__ = ("idempotency_key", "operation_id", "webhook_url")

    def __init__(
        self,
        http: httpx.AsyncClient,
        api_base: str,
        *,
        operation_id: str,
        idempotency_key: str,
        webhook_url: str | None = None,
    ) -> None:
        super().__init__(http, api_base)
        self.operation_id = operation_id
        self.idempotency_key = idempotency_key
        self.webhook_url = webhook_url


OperationHandler = Callable[[Any, Credentials, OperationContext], Awaitable[OperationResult]]


def classify_operation_response(
    response: httpx.Response,
    *,
    error_message: Callable[[Any], str | None],
    error_code: Callable[[Any], str | None] = lambda body: None,
    secrets: Mapping[str, Any] | Iterable[Any] = (),
) -> OperationResult | None:
    """Classify a provider's answer to an operation by status; ``None`` for a 2xx to read.

    * 401, 403: auth_failed;
    * 408, 429, 5xx: transient, with ``Retry-After`` when the provider sent one;
    * other 4xx: rejected;
    * anything else that is not 2xx (a redirect): unknown, since the provider may have acted.

    Args:
        response: the provider's answer.
        error_message: pulls the provider's own message out of a parsed JSON error body (it
            gets ``None`` when the body is not JSON); when it finds none, the status line
            stands in.
        error_code: pulls the provider's error code out of the same body, if it has one.
        secrets: the credential values to mask in the provider's message (a provider may
            echo the key it refused); see :func:`relaykit.redact`.
    """
    status = response.status_code
    if 200 <= status < 300:
        return None
    body = json_body(response)
    message = redact(error_text(error_message, body) or status_line(response), secrets)
    code = error_text(error_code, body)
    if status in (401, 403):
        outcome = OperationOutcome.AUTH_FAILED
    elif status in (408, 429) or status >= 500:
        outcome = OperationOutcome.TRANSIENT
    elif 400 <= status < 500:
        outcome = OperationOutcome.REJECTED
    else:
        outcome = OperationOutcome.UNKNOWN
    return OperationResult.failed(
        outcome,
        message,
        status_code=status,
        provider_code=code,
        retry_after=parse_retry_after(response.headers.get("retry-after")),
    )


async def run_operation(
    handler: OperationHandler,
    payload: msgspec.Struct,
    credentials: Credentials,
    ctx: OperationContext,
    *,
    output: type[msgspec.Struct],
    secrets: Mapping[str, Any],
) -> OperationResult:
    """Call ``handler``; never raises. Transport errors are classified by whether the request
    can have reached the provider; messages are redacted of ``secrets`` and bounded."""
    try:
        result = await handler(payload, credentials, ctx)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        result = OperationResult.failed(
            OperationOutcome.TRANSIENT, f"could not reach the provider ({type(exc).__name__})"
        )
    except httpx.TimeoutException:
        result = OperationResult.failed(
            OperationOutcome.UNKNOWN, "the provider did not answer in time; it may have acted"
        )
    except httpx.TransportError as exc:
        result = OperationResult.failed(
            OperationOutcome.UNKNOWN,
            f"the connection to the provider failed mid-request ({type(exc).__name__})",
        )
    except Exception as exc:
        logger.debug("an operation handler raised", exc_info=True)  # redacted by the log step
        result = OperationResult.failed(
            OperationOutcome.UNKNOWN, f"the operation handler failed ({type(exc).__name__})"
        )
    if not isinstance(result, OperationResult):
        result = OperationResult.failed(
            OperationOutcome.UNKNOWN, f"the handler returned {type(result).__name__}"
        )
    if result.outcome is OperationOutcome.SUCCEEDED and not isinstance(result.result, output):
        result = OperationResult.failed(
            OperationOutcome.UNKNOWN,
            f"the handler's result is not a {output.__name__}",
            status_code=result.status_code,
        )
    message = redact(result.message, secrets)[:MAX_MESSAGE_LENGTH]
    if message != result.message:
        result = msgspec.structs.replace(result, message=message)
    code = result.provider_code
    if code is not None and len(code) > MAX_PROVIDER_CODE_LENGTH:
        # A provider's error code longer than any real one is cut, not refused: the
        # attempt's record must still be written.
        result = msgspec.structs.replace(result, provider_code=code[:MAX_PROVIDER_CODE_LENGTH])
    return result
