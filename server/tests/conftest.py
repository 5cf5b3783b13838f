from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from relaykit import CredentialField, Provider, VerificationResult, hookimpl
from relaykit import tenants as store
from relaykit.capabilities import MessageResult, PaymentResult, RefundResult
from relaykit.operations import OperationOutcome, OperationResult
from relaykit.plugins import RelaykitPluginManager, make_plugin_manager
from relaykit.services import Services
from relaykit.settings import Settings
from relaykit.storage.database import Database, open_database
from relaykit.testing.databases import throwaway_database_url
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
from relaykit_server.state import services_of


async def _accept(credentials: Any, ctx: Any) -> VerificationResult:
    return VerificationResult.accepted()


#: Every send recorded, for asserting which integration got called (and how often).
SENT: list[dict[str, Any]] = []
#: Awaited by a send before it answers, with the message id it is about to return: a test
#: uses it to deliver a webhook before the send's end is recorded, as a fast provider can.
ON_SEND: list[Callable[[str], Awaitable[None]]] = []


async def _send(payload: Any, credentials: Any, ctx: Any) -> OperationResult:
    """Behaves as the auth token says: tok-503…, tok-401…, tok-400…, tok-lost…, else sends."""
    token = credentials["auth_token"]
    SENT.append(
        {"token": token, "to": payload.to, "key": ctx.idempotency_key, "webhook": ctx.webhook_url}
    )
    if token.startswith("tok-503"):
        return OperationResult.failed(
            OperationOutcome.TRANSIENT, "Service Unavailable", status_code=503
        )
    if token.startswith("tok-401"):
        return OperationResult.failed(
            OperationOutcome.AUTH_FAILED, "Authenticate", status_code=401, provider_code="20003"
        )
    if token.startswith("tok-400"):
        return OperationResult.failed(
            OperationOutcome.REJECTED,
            "The 'To' number is not valid",
            status_code=400,
            provider_code="21211",
        )
    if token.startswith("tok-lost"):
        return OperationResult.failed(
            OperationOutcome.UNKNOWN, "the provider did not answer in time"
        )
    for hook in ON_SEND:
        await hook(f"msg-{ctx.operation_id}")
    return OperationResult.succeeded(
        MessageResult(
            provider_message_id=f"msg-{ctx.operation_id}",
            provider_status="queued",
            to=payload.to,
            from_=payload.from_ or credentials["from_number"],
        )
    )


async def _pay(payload: Any, credentials: Any, ctx: Any) -> OperationResult:
    return OperationResult.succeeded(
        PaymentResult(
            provider_payment_id=f"pay-{ctx.idempotency_key}",
            provider_status="requires_payment_method",
            amount=getattr(payload, "amount", None) or 100,
            currency=getattr(payload, "currency", "usd"),
        )
    )


async def _refund(payload: Any, credentials: Any, ctx: Any) -> OperationResult:
    return OperationResult.succeeded(
        RefundResult(
            provider_refund_id="re_1",
            provider_status="succeeded",
            payment_id=payload.payment_id,
            amount=payload.amount or 100,
        )
    )


# -- a webhook scheme as simple as a real one can be ------------------------------------------
#
# ``X-Test-Timestamp: t`` and ``X-Test-Signature: hex(HMAC-SHA256(secret, message))`` where
# the message is ``t.url.body`` (messaging: the URL is signed, as Twilio and Plivo do) or
# ``t.body`` (payments, as Stripe). The body is JSON: {"id", "type", "object", "status",
# "code"}; {"boom": true} makes the scheme fail as a buggy plugin would.


def signed_message(timestamp: int, url: str | None, body: bytes) -> bytes:
    prefix = f"{timestamp}." + (f"{url}." if url is not None else "")
    return prefix.encode() + body


def webhook_headers(
    secret: str, body: bytes, *, url: str | None = None, timestamp: int | None = None
) -> dict[str, str]:
    """The headers a provider using the test scheme sends with ``body``."""
    stamp = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        "X-Test-Timestamp": str(stamp),
        "X-Test-Signature": hmac_hex(secret, signed_message(stamp, url, body)),
    }


def _test_scheme(secret_field: str, *, signs_url: bool) -> WebhookScheme:
    def receive(
        request: WebhookRequest, credentials: Mapping[str, Any], ctx: WebhookContext
    ) -> list[WebhookEvent]:
        stamp, signature = request.header("x-test-timestamp"), request.header("x-test-signature")
        if not stamp or not signature or not stamp.isdigit():
            raise WebhookRejected("missing or malformed signature headers")
        if abs(ctx.now.timestamp() - int(stamp)) > ctx.tolerance:
            raise WebhookRejected("timestamp outside the tolerance")
        message = signed_message(int(stamp), request.url if signs_url else None, request.body)
        if not signatures_match(hmac_hex(credentials[secret_field], message), [signature]):
            raise WebhookRejected("signature mismatch")
        body = request.json()
        if isinstance(body, dict) and body.get("boom"):
            raise RuntimeError(f"plugin bug holding {credentials[secret_field]}")
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            raise WebhookRejected("not an event")
        return [
            WebhookEvent(
                dedupe_key=body["id"],
                type=str(body.get("type", "message.status")),
                object_id=body.get("object"),
                status=body.get("status"),
                provider_code=body.get("code"),
            )
        ]

    return WebhookScheme(receive=receive, secret_fields=(secret_field,), signs_url=signs_url)


# Providers shaped like the contract's examples; the real plugins are not installed in this env.
PAYMENTS = Provider(
    name="paymo",
    display_name="Paymo",
    category="payment",
    capabilities=("initiate_payment", "process_refund", "verify_payment"),
    credential_schema={
        "publishable_key": CredentialField(),
        "secret_key": CredentialField(sensitive=True),
        "webhook_secret": CredentialField(sensitive=True, required=False),
    },
    api_base="https://api.paymo.example",
    verify=_accept,
    operations={"initiate_payment": _pay, "process_refund": _refund, "verify_payment": _pay},
    webhooks=_test_scheme("webhook_secret", signs_url=False),
)
MESSAGING = Provider(
    name="textly",
    display_name="Textly",
    category="communication",
    capabilities=("send_sms", "send_whatsapp"),
    credential_schema={
        "account_sid": CredentialField(),
        "auth_token": CredentialField(sensitive=True),
        "from_number": CredentialField(pattern=r"^\+[1-9]\d{1,14}$"),
    },
    api_base="https://api.textly.example",
    verify=_accept,
    operations={"send_sms": _send, "send_whatsapp": _send},
    webhooks=_test_scheme("auth_token", signs_url=True),
)


OTHER_MESSAGING = msgspec.structs.replace(MESSAGING, name="chatter", display_name="Chatter")


class TestProviders:
    @hookimpl
    def relaykit_providers(self) -> list[Provider]:
        return [MESSAGING, OTHER_MESSAGING, PAYMENTS]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    with throwaway_database_url(tmp_path) as url:
        yield url


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    # The API tests pin statuses themselves; the worker's own tests turn it on.
    return Settings.from_env(
        {
            "RELAYKIT_HOME": str(tmp_path / "home"),
            "RELAYKIT_DATABASE_URL": database_url,
            "RELAYKIT_EMBEDDED_WORKER": "0",
        }
    )


@pytest.fixture
def plugin_manager() -> RelaykitPluginManager:
    return make_plugin_manager(
        load_entrypoints=False, plugins=[("test-providers", TestProviders())]
    )


class Api:
    """A running app, a client, helpers to make tenants and tokens, and a database handle of
    the test's own on the app's database (as another process would have)."""

    def __init__(self, client: AsyncTestClient[Any], database: Database) -> None:
        self.client = client
        self.database = database

    @property
    def services(self) -> Services:
        return services_of(self.client.app)

    def tenant_token(self, name: str) -> tuple[str, dict[str, str]]:
        tenant = self.database.transaction_blocking(store.create_tenant, name)
        _, token = self.database.transaction_blocking(store.create_token, name)
        return tenant.id, {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def api(settings: Settings, plugin_manager: RelaykitPluginManager) -> AsyncIterator[Api]:
    app = create_app(settings, plugin_manager=plugin_manager)
    async with AsyncTestClient(app=app) as client:
        database = open_database(settings, migrate=False)
        try:
            yield Api(client, database)
        finally:
            database.dispose()
