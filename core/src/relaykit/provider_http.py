"""Talking HTTP to a provider: the client the core hands a provider's callables, and the
helpers those callables read the provider's answers with.

The core makes one ``httpx.AsyncClient`` per provider (:class:`ProviderClients`), pointed at
the provider's API base (or its ``RELAYKIT_<NAME>_API_BASE`` override), with a timeout and
with redirects not followed: a redirect says nothing a provider's API should say, and
following one could send the credentials to another host. A verifier gets it in a
:class:`ProviderContext`, an operation handler in an :class:`relaykit.OperationContext`.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from relaykit.providers import Provider

DEFAULT_TIMEOUT_SECONDS = 10.0
#: Messages kept from a provider are cut to this length; a provider's error page is not a message.
MAX_MESSAGE_LENGTH = 500


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
    """The environment variable that overrides ``provider_name``'s API base."""
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


def error_text(extract: Callable[[Any], object], body: Any) -> str | None:
    """What ``extract`` finds in a provider's parsed error body, as stripped text.

    ``None`` when it finds nothing, or raises on a body of a shape it did not expect: the
    caller then falls back to the status line.
    """
    try:
        value = extract(body)
    except Exception:
        return None
    text = "" if value is None else str(value).strip()
    return text or None


def status_line(response: httpx.Response) -> str:
    """``HTTP 503 Service Unavailable``: what stands in when a provider gives no message."""
    return f"HTTP {response.status_code} {response.reason_phrase or ''}".strip()


def path_segment(value: str) -> str | None:
    """``value`` as one segment of a URL path, or ``None`` if no segment can carry it.

    Args:
        value: an identifier a tenant entered (an account SID, an Auth ID) that goes into
            the path of a provider's resource.

    Returns:
        ``value`` percent-quoted with nothing left safe, so that a ``/``, ``?`` or ``#`` stays
        inside the segment instead of reaching another resource. ``None`` for ``""``, ``.``
        and ``..``: as a whole segment those are removed by URL normalisation (``..`` would
        climb to the parent resource), so the caller answers without a request.
    """
    if value in ("", ".", ".."):
        return None
    return quote(value, safe="")
