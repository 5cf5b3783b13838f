"""Checking a provider's credentials: the result type, the classify helper and the safe runner.

A verifier answers one of three things:

* ``accepted``: the provider took the credentials;
* ``rejected``: the provider refused them (401/403 and other final answers); final, the
  provider's message is kept so the tenant can see why;
* ``transient``: the answer says nothing about the credentials (timeouts, connection errors,
  429, 5xx, a malformed body); the check is retried later, honouring ``retry_after``.

Plugins write ``verify`` with :func:`classify_response` and :func:`relaykit.json_body`; the
core calls it through :func:`run_verifier`, which never raises and never lets a credential
value into the message it returns. The HTTP client and its helpers are in
:mod:`relaykit.provider_http`.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import anyio
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
from relaykit.providers import Credentials, Provider
from relaykit.redaction import redact

logger = logging.getLogger("relaykit.verification")


class VerificationOutcome(enum.StrEnum):
    """What a credential check concluded (see the module's docstring)."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    TRANSIENT = "transient"


class VerificationResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a credential check concluded.

    ``message`` is meant for the tenant (it ends up in the integration's metadata);
    ``status_code`` is the provider's HTTP status when there was one; ``retry_after`` is the
    provider's requested delay in seconds for a transient answer, when it gave one.
    """

    outcome: VerificationOutcome
    message: str = ""
    status_code: int | None = None
    retry_after: float | None = None

    @classmethod
    def accepted(cls, message: str = "Credentials accepted") -> VerificationResult:
        return cls(outcome=VerificationOutcome.ACCEPTED, message=message)

    @classmethod
    def rejected(cls, message: str, *, status_code: int | None = None) -> VerificationResult:
        return cls(outcome=VerificationOutcome.REJECTED, message=message, status_code=status_code)

    @classmethod
    def transient(
        cls, message: str, *, status_code: int | None = None, retry_after: float | None = None
    ) -> VerificationResult:
        return cls(
            outcome=VerificationOutcome.TRANSIENT,
            message=message,
            status_code=status_code,
            retry_after=retry_after,
        )


def classify_response(
    response: httpx.Response,
    *,
    error_message: Callable[[Any], str | None],
    secrets: Mapping[str, Any] | Iterable[Any] = (),
) -> VerificationResult | None:
    """Classify a provider's answer by status alone; ``None`` for a 2xx the caller must read.

    * 401, 403 and other 4xx: rejected, final (408 and 429 excepted);
    * 408, 429, 5xx: transient, with ``Retry-After`` when the provider sent one;
    * anything else that is not 2xx (a redirect): transient, since it says nothing of the key.

    Args:
        response: the provider's answer.
        error_message: pulls the provider's own message out of a parsed JSON error body (it
            gets ``None`` when the body is not JSON); when it finds none, the status line
            stands in.
        secrets: the credential values to mask in the provider's message (a provider may
            echo the key it refused); see :func:`relaykit.redact`.
    """
    status = response.status_code
    if 200 <= status < 300:
        return None
    if status < 400:
        return VerificationResult.transient(
            f"unexpected answer: {status_line(response)}", status_code=status
        )
    message = redact(
        error_text(error_message, json_body(response)) or status_line(response), secrets
    )
    if status in (408, 429) or status >= 500:
        return VerificationResult.transient(
            message,
            status_code=status,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    return VerificationResult.rejected(message, status_code=status)


def deadline_passed(seconds: float) -> VerificationResult:
    """The result of a check cut at its total deadline (``RELAYKIT_VERIFY_TIMEOUT``)."""
    return VerificationResult.transient(
        f"the provider did not answer in time (within {seconds:g} s)"
    )


async def run_verifier(
    provider: Provider,
    credentials: Credentials,
    ctx: ProviderContext,
    *,
    deadline: float | None = None,
) -> VerificationResult:
    """Run ``provider.verify`` and always come back with a result, never an exception.

    Transport failures (timeouts, refused connections, broken responses) become transient
    results; an exception from the verifier itself becomes a transient result naming only its
    type, since its message could carry a credential. Every message is redacted of all
    credential values and cut to :data:`MAX_MESSAGE_LENGTH`.

    ``deadline`` (seconds) bounds the whole check, however many requests the verifier makes
    and however slowly the provider sends its answer (the HTTP client's own timeout applies
    to each phase of one request only): past it the verifier is cancelled and the result is
    transient (:func:`deadline_passed`).
    """
    try:
        with anyio.move_on_after(deadline) as scope:
            result = await provider.verify(credentials, ctx)
        if scope.cancelled_caught:
            result = deadline_passed(deadline or 0.0)
    except httpx.TimeoutException:
        result = VerificationResult.transient("the provider did not answer in time")
    except httpx.TransportError as exc:
        result = VerificationResult.transient(
            f"could not reach the provider ({type(exc).__name__})"
        )
    except Exception as exc:
        # The traceback helps the plugin's author; the log's redaction step masks any
        # credential the exception carries. The result (stored, shown) names only the type.
        logger.debug("the %s verifier raised", provider.name, exc_info=True)
        result = VerificationResult.transient(
            f"the {provider.name} verifier failed ({type(exc).__name__})"
        )
    if not isinstance(result, VerificationResult):
        result = VerificationResult.transient(
            f"the {provider.name} verifier returned {type(result).__name__}, not a result"
        )
    message = redact(result.message, credentials)[:MAX_MESSAGE_LENGTH]
    if message != result.message:
        result = msgspec.structs.replace(result, message=message)
    return result
