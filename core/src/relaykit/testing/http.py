"""Faking a provider's HTTP API for tests, at the transport.

Nothing here patches relaykit: the provider's verifier runs exactly as in production, through
:func:`relaykit.verification.run_verifier` and a real ``httpx.AsyncClient``; only the far end
is replaced, by an ``httpx.MockTransport`` handler or by a real local socket.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator, Mapping

import anyio
import httpx

from relaykit.capabilities import STANDARD_CONTRACTS, decode_input
from relaykit.operations import OperationContext, OperationResult, run_operation
from relaykit.provider_http import ProviderContext, api_base_env_var, make_provider_client
from relaykit.providers import Credentials, Provider
from relaykit.verification import VerificationResult, run_verifier

Handler = Callable[[httpx.Request], httpx.Response]


def recording(respond: Handler) -> tuple[Handler, list[httpx.Request]]:
    """``respond`` as a handler that keeps every request it answers, and the list it keeps
    them in."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        response = respond(request)
        assert isinstance(response, httpx.Response), f"the fake answered {response!r}"
        return response

    return handler, seen


def basic_auth(request: httpx.Request) -> str:
    """The ``user:password`` of the request's HTTP Basic ``Authorization`` header."""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    assert scheme == "Basic", f"the request has no Basic auth: {scheme!r}"
    return base64.b64decode(encoded).decode()


def run_verification(
    provider: Provider,
    credentials: Credentials,
    *,
    handler: Handler | None = None,
    api_base: str | None = None,
    timeout: float = 5.0,
) -> VerificationResult:
    """Verify ``credentials`` against ``handler`` (a fake of the API) or a real ``api_base``."""
    environ: Mapping[str, str] = {api_base_env_var(provider.name): api_base} if api_base else {}
    transport = httpx.MockTransport(handler) if handler is not None else None

    async def main() -> VerificationResult:
        async with make_provider_client(
            provider, environ, timeout=timeout, transport=transport
        ) as client:
            ctx = ProviderContext(client, str(client.base_url))
            return await run_verifier(provider, credentials, ctx)

    return anyio.run(main)


def run_handler(
    provider: Provider,
    capability: str,
    payload: Mapping[str, object],
    credentials: Credentials,
    *,
    handler: Handler | None = None,
    api_base: str | None = None,
    timeout: float = 5.0,
    idempotency_key: str = "op_test_key",
    operation_id: str = "op_test",
    secrets: Mapping[str, object] | None = None,
    webhook_url: str | None = None,
) -> OperationResult:
    """Run ``provider``'s handler for ``capability`` as the dispatcher does: ``payload`` (JSON)
    decoded by the capability's contract, credentials given, through ``run_operation``, with
    ``handler`` (a fake of the API) or a real ``api_base`` at the far end.

    ``secrets`` are the values ``run_operation`` redacts (default: the provider's sensitive
    fields, as the dispatcher passes them); pass ``{}`` to check a handler masks by itself.
    ``webhook_url`` is ``ctx.webhook_url``, the integration's webhook URL when
    ``RELAYKIT_PUBLIC_URL`` is set (default: not set).
    """
    contract = STANDARD_CONTRACTS[capability]
    request = decode_input(contract, dict(payload))
    environ: Mapping[str, str] = {api_base_env_var(provider.name): api_base} if api_base else {}
    transport = httpx.MockTransport(handler) if handler is not None else None
    if secrets is None:
        secrets = {k: v for k, v in credentials.items() if k in provider.sensitive_fields}

    async def main() -> OperationResult:
        async with make_provider_client(
            provider, environ, timeout=timeout, transport=transport
        ) as client:
            ctx = OperationContext(
                client,
                str(client.base_url),
                operation_id=operation_id,
                idempotency_key=idempotency_key,
                webhook_url=webhook_url,
            )
            return await run_operation(
                provider.operations[capability],
                request,
                credentials,
                ctx,
                output=contract.output,
                secrets=secrets,
            )

    return anyio.run(main)


def run_recorded(
    provider: Provider,
    capability: str,
    payload: Mapping[str, object],
    credentials: Credentials,
    respond: Handler,
    *,
    webhook_url: str | None = None,
) -> tuple[OperationResult, list[httpx.Request]]:
    """:func:`run_handler` against ``respond`` (a fake of the provider's API): the result,
    and every request the fake received."""
    handler, seen = recording(respond)
    result = run_handler(
        provider, capability, payload, credentials, handler=handler, webhook_url=webhook_url
    )
    return result, seen


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """A local HTTP address that accepts connections and never answers; yields its base URL."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            held.append(conn)  # keep it open, say nothing

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


def closed_port_url() -> str:
    """A local base URL nothing listens on: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
