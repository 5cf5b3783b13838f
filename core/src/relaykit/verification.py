"""Checking a provider's credentials: the result type, HTTP helpers and the safe runner.

A verifier answers one of three things:

* ``accepted``: the provider took the credentials;
* ``rejected``: the provider refused them (401/403 and other final answers); final, the
  provider's message is kept so the tenant can see why;
* ``transient``: the answer says nothing about the credentials (timeouts, connection errors,
  429, 5xx, a malformed body); the check is retried later, honouring ``retry_after``.

Plugins write ``verify`` with :func:`classify_response` and :func:`json_body`; the core calls
it through :func:`run_verifier`, which never raises and never lets a credential value into
the message it returns.
"""

from __future__ import annotations

import email.utils
import enum
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import msgspec

from relaykit.providers import Credentials, Provider

logger = logging.getLogger("relaykit.verification")

DEFAULT_TIMEOUT_SECONDS = 10.0
#: Messages kept from a provider are cut to this length; a provider's error page is not a message.
MAX_MESSAGE_LENGTH = 500
REDACTED = "[redacted]"


class Outcome(enum.StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    TRANSIENT = "transient"


class VerificationResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a credential check concluded.

    ``message`` is meant for the tenant (it ends up in the integration's metadata);
    ``status_code`` is the provider's HTTP status when there was one; ``retry_after`` is the
    provider's requested delay in seconds for a transient answer, when it gave one.
    """

    outcome: Outcome
    message: str = ""
    status_code: int | None = None
    retry_after: float | None = None

    @classmethod
    def accepted(cls, message: str = "Credentials accepted") -> VerificationResult:
        return cls(outcome=Outcome.ACCEPTED, message=message)

    @classmethod
    def rejected(cls, message: str, *, status_code: int | None = None) -> VerificationResult:
        return cls(outcome=Outcome.REJECTED, message=message, status_code=status_code)

    @classmethod
    def transient(
        cls, message: str, *, status_code: int | None = None, retry_after: float | None = None
    ) -> VerificationResult:
        return cls(
            outcome=Outcome.TRANSIENT,
            message=message,
            status_code=status_code,
            retry_after=retry_after,
        )


class ProviderContext:
    """What the core hands a provider's callables besides the credentials.

    ``http`` is an ``httpx.AsyncClient`` whose ``base_url`` is the provider's API base (or its
    ``RELAYKIT_<NAME>_API_BASE`` override) and whose timeout is set; paths are relative.
    """

    __slots__ = ("api_base", "http")

    def __init__(self, http: httpx.AsyncClient, api_base: str) -> None:
        self.http = http
        self.api_base = api_base


def api_base_env_var(provider_name: str) -> str:
    return f"RELAYKIT_{provider_name.upper()}_API_BASE"


def resolve_api_base(provider: Provider, environ: Mapping[str, str]) -> str:
    """The base URL to reach ``provider`` at: the environment's override, else its default."""
    override = environ.get(api_base_env_var(provider.name), "").strip()
    return (override or provider.api_base).rstrip("/")


def make_provider_client(
    provider: Provider,
    environ: Mapping[str, str],
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An HTTP client for one provider: base URL resolved, timeout set, no redirects followed."""
    base = resolve_api_base(provider, environ)
    return httpx.AsyncClient(
        base_url=base,
        timeout=httpx.Timeout(timeout),
        transport=transport,
        follow_redirects=False,
        headers={"User-Agent": "relaykit"},
    )


class ProviderClients:
    """One HTTP client (one connection pool) per provider, kept for the owner's lifetime;
    the verification worker and the dispatcher each hold one."""

    def __init__(
        self,
        api_bases: Mapping[str, str],
        *,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._api_bases = api_bases
        self._timeout = timeout
        self._transport = transport
        self._clients: dict[str, httpx.AsyncClient] = {}

    def get(self, provider: Provider) -> httpx.AsyncClient:
        client = self._clients.get(provider.name)
        if client is None:
            client = make_provider_client(
                provider, self._api_bases, timeout=self._timeout, transport=self._transport
            )
            self._clients[provider.name] = client
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date (RFC 9110)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def json_body(response: httpx.Response) -> Any:
    """The response's JSON body, or ``None`` when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def _status_phrase(response: httpx.Response) -> str:
    phrase = response.reason_phrase or ""
    return f"HTTP {response.status_code} {phrase}".strip()


def classify_response(
    response: httpx.Response,
    *,
    error_message: Callable[[Any], str | None],
) -> VerificationResult | None:
    """Classify a provider's answer by status alone; ``None`` for a 2xx the caller must read.

    ``error_message`` pulls the provider's own message out of a parsed JSON error body (it
    gets ``None`` when the body is not JSON); when it finds none, the HTTP status stands in.

    * 401, 403 and other 4xx: rejected, final (408 and 429 excepted);
    * 408, 429, 5xx: transient, with ``Retry-After`` when the provider sent one;
    * anything else that is not 2xx (a redirect): transient, since it says nothing of the key.
    """
    status = response.status_code
    if 200 <= status < 300:
        return None
    if status in (408, 429) or status >= 500:
        message = _provider_message(response, error_message) or _status_phrase(response)
        return VerificationResult.transient(
            message,
            status_code=status,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    if 400 <= status < 500:
        message = _provider_message(response, error_message) or _status_phrase(response)
        return VerificationResult.rejected(message, status_code=status)
    return VerificationResult.transient(
        f"unexpected answer: {_status_phrase(response)}", status_code=status
    )


def _provider_message(
    response: httpx.Response, error_message: Callable[[Any], str | None]
) -> str | None:
    body = json_body(response)
    try:
        message = error_message(body)
    except Exception:  # a body of an unexpected shape: fall back to the status line
        return None
    if isinstance(message, str) and message.strip():
        return message.strip()
    return None


def redact(message: str, secrets: Mapping[str, Any] | list[Any] | tuple[Any, ...]) -> str:
    """``message`` with every credential value in ``secrets`` replaced by a marker.

    Values shorter than four characters are left alone: masking "1" everywhere would mangle
    messages while protecting nothing.
    """
    values = secrets.values() if isinstance(secrets, Mapping) else secrets
    for value in sorted((str(v) for v in values if v is not None), key=len, reverse=True):
        if len(value) >= 4:
            message = message.replace(value, REDACTED)
    return message


async def run_verifier(
    provider: Provider, credentials: Credentials, ctx: ProviderContext
) -> VerificationResult:
    """Run ``provider.verify`` and always come back with a result, never an exception.

    Transport failures (timeouts, refused connections, broken responses) become transient
    results; an exception from the verifier itself becomes a transient result naming only its
    type, since its message could carry a credential. Every message is redacted of all
    credential values and cut to :data:`MAX_MESSAGE_LENGTH`.
    """
    try:
        result = await provider.verify(credentials, ctx)
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
