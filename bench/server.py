"""The relaykit app as ``relaykit serve`` runs it, plus what the benchmarks need:

* 25 bench providers (``bench01`` … ``bench25``, send_sms), so one tenant can hold 25
  integrations (one per provider, as the contract allows);
* ``GET /bench/ceiling``: the same app and server answering a fixed payload (the bytes of
  ``$BENCH_CEILING_FILE``, read once), the ceiling the API's figures are divided by;
* a webhook scheme on each bench provider: ``X-Bench-Signature`` is the hex HMAC-SHA256 of
  the raw body with the integration's ``api_key`` (as Stripe's, without the timestamp, so
  the runner can sign the bodies before the run), the body one JSON event.

    python bench/server.py PORT [--workers N]

With ``--workers N`` (N > 1) uvicorn runs N processes, as ``relaykit serve --workers N``
does: each imports this module (``server:make_app``, the bench folder as the app dir) and
builds its own app with the bench providers and the ceiling route; /metrics is shared
through ``PROMETHEUS_MULTIPROC_DIR`` as serve shares it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import uvicorn
from litestar import Litestar, Response, get

from relaykit import CredentialField, Provider, VerificationResult, hookimpl
from relaykit.capabilities import MessageResult
from relaykit.operations import OperationResult, classify_operation_response
from relaykit.plugins import make_plugin_manager
from relaykit.settings import Settings
from relaykit.webhooks import (
    WebhookContext,
    WebhookEvent,
    WebhookRejected,
    WebhookRequest,
    WebhookScheme,
    hmac_hex,
    signatures_match,
)
from relaykit_server import create_app
from relaykit_server.plugin import prepare_multiprocess_metrics

PROVIDER_COUNT = 25


async def verify(credentials: Any, ctx: Any) -> VerificationResult:
    return VerificationResult.accepted()


async def send_sms(payload: Any, credentials: Any, ctx: Any) -> OperationResult:
    response = await ctx.http.post(
        "/v1/messages",
        json={"to": payload.to, "text": payload.body},
        headers={"Authorization": f"Bearer {credentials['api_key']}"},
    )
    failed = classify_operation_response(response, error_message=lambda body: None)
    if failed is not None:
        return failed
    return OperationResult.succeeded(
        MessageResult(
            provider_message_id=response.json()["id"],
            provider_status="queued",
            to=payload.to,
            from_=credentials["sender"],
        )
    )


SIGNATURE_HEADER = "x-bench-signature"


def sign(secret: str, body: bytes) -> str:
    return hmac_hex(secret, body)


def receive(
    request: WebhookRequest, credentials: Mapping[str, Any], ctx: WebhookContext
) -> list[WebhookEvent]:
    signature = request.header(SIGNATURE_HEADER)
    if not signature or not signatures_match(
        sign(credentials["api_key"], request.body), [signature]
    ):
        raise WebhookRejected("signature mismatch")
    body = request.json()
    if not isinstance(body, dict) or not isinstance(body.get("id"), str):
        raise WebhookRejected("not an event")
    return [
        WebhookEvent(
            dedupe_key=body["id"],
            type="message.status",
            object_id=body.get("object"),
            status=body.get("status"),
        )
    ]


SCHEME = WebhookScheme(receive=receive, secret_fields=("api_key",))


def bench_provider(number: int) -> Provider:
    return Provider(
        name=f"bench{number:02d}",
        display_name=f"Bench {number:02d}",
        category="communication",
        capabilities=("send_sms",),
        credential_schema={
            "api_key": CredentialField(sensitive=True),
            "sender": CredentialField(pattern=r"^\+[1-9][0-9]{1,14}$"),
        },
        api_base="http://127.0.0.1:9",
        verify=verify,
        operations={"send_sms": send_sms},
        webhooks=SCHEME,
    )


class BenchProviders:
    @hookimpl
    def relaykit_providers(self) -> list[Provider]:
        return [bench_provider(n) for n in range(1, PROVIDER_COUNT + 1)]


_ceiling: bytes | None = None


@get("/bench/ceiling", include_in_schema=False, sync_to_thread=False)
def ceiling() -> Response[bytes]:
    # Read once, on the first request (the runner writes the file after the server is up).
    global _ceiling
    if _ceiling is None:
        _ceiling = Path(os.environ["BENCH_CEILING_FILE"]).read_bytes()
    return Response(_ceiling, media_type="application/json")


def make_app() -> Litestar:
    """The bench app: relaykit's, with the bench providers and the ceiling route (the factory
    each worker process calls with ``--workers``)."""
    settings = Settings.from_env()
    pm = make_plugin_manager(plugins=[("bench", BenchProviders())])
    app = create_app(settings, plugin_manager=pm)
    app.register(ceiling)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": args.port,
        "log_level": "warning",
        "access_log": False,
    }
    if args.workers > 1:
        prepare_multiprocess_metrics(Settings.from_env().home)
        uvicorn.run(
            "server:make_app",
            factory=True,
            workers=args.workers,
            app_dir=str(Path(__file__).resolve().parent),
            **options,
        )
        return
    uvicorn.run(make_app(), **options)


if __name__ == "__main__":
    main()
