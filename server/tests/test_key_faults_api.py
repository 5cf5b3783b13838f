"""Key faults through the real app (its lifespan, embedded worker, database, plugin loading):
a key provider that cannot be used is the operator's fault and never the tenant's. The key
provider is a plugin's (``RELAYKIT_KEY_PROVIDER=vaultish``): AES-GCM in memory whose
``unwrap`` (and, for a full outage, ``wrap``) raises while it is down, with key material in
its message, as a KMS client might. Providers' APIs are the test plugins of conftest."""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar

import anyio
import httpx
import msgspec
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from litestar.testing import AsyncTestClient

from relaykit import hookimpl
from relaykit.keys import KeyProviderSpec
from relaykit.plugins import RelaykitPluginManager, make_plugin_manager
from relaykit.settings import Settings
from relaykit.storage.database import open_database
from relaykit.storage.models import integrations
from relaykit_server import create_app

from .conftest import SENT, Api, TestProviders, webhook_headers

pytestmark = pytest.mark.anyio

BASE = "/api/v1/integrations"
SECRET = "auth_token_canary_keyfault_7c1d"
FALLBACK_SECRET = "auth_token_canary_fallback_2b9e"
KEY_MATERIAL = "kek-material-canary-31f0"
MESSAGE = {"to": "+15550100001", "body": "Your code is 123456"}


class Vaultish:
    """A key provider plugin: one 256-bit KEK in memory, so ``in_process``. Down while
    ``unwrap_down`` (a revoked decrypt permission) or ``wrap_down`` too (unreachable)."""

    name = "vaultish"
    in_process = True
    default_key_id = "vaultish-key-1"
    unwrap_down: ClassVar[bool] = False
    wrap_down: ClassVar[bool] = False
    _kek: ClassVar[bytes] = AESGCM.generate_key(bit_length=256)

    def __init__(self, settings: Settings) -> None:
        self.aead = AESGCM(self._kek)

    def wrap(self, key_id: str, data_key: bytes, associated_data: bytes) -> bytes:
        if Vaultish.wrap_down:
            raise ConnectionError(f"vault unreachable; token {KEY_MATERIAL}")
        nonce = secrets.token_bytes(12)
        return nonce + self.aead.encrypt(nonce, data_key, associated_data)

    def unwrap(self, key_id: str, wrapped: bytes, associated_data: bytes) -> bytes:
        if Vaultish.unwrap_down:
            raise PermissionError(f"vault: decrypt denied for {KEY_MATERIAL}")
        return self.aead.decrypt(wrapped[:12], wrapped[12:], associated_data)


class VaultishPlugin:
    @hookimpl
    def relaykit_key_providers(self) -> list[KeyProviderSpec]:
        return [KeyProviderSpec("vaultish", Vaultish)]


@pytest.fixture
def plugins() -> RelaykitPluginManager:
    Vaultish.unwrap_down = Vaultish.wrap_down = False
    return make_plugin_manager(
        load_entrypoints=False,
        plugins=[("test-providers", TestProviders()), ("vaultish", VaultishPlugin())],
    )


@pytest.fixture(autouse=True)
def clear_sent() -> None:
    SENT.clear()


class Seen:
    """Every answer the tests got, to check none holds a secret and none is a 5xx but the
    503s the contract names."""

    def __init__(self, client: AsyncTestClient[Any]) -> None:
        self.client = client
        self.responses: list[httpx.Response] = []

    async def __call__(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = await self.client.request(method, url, **kwargs)
        self.responses.append(response)
        return response


@contextlib.asynccontextmanager
async def serve(settings: Settings, plugins: RelaykitPluginManager) -> AsyncIterator[Api]:
    app = create_app(settings, plugin_manager=plugins)
    async with AsyncTestClient(app=app) as client:
        database = open_database(settings, migrate=False)
        try:
            yield Api(client, database)
        finally:
            database.dispose()


def fast(settings: Settings) -> Settings:
    return msgspec.structs.replace(
        settings,
        key_provider="vaultish",
        embedded_worker=True,
        worker_poll=0.05,
        worker_heartbeat=1.0,
        verify_backoff_base=0.05,
        verify_backoff_max=0.2,
        verify_max_attempts=2,
    )


async def eventually(condition: Callable[[], Awaitable[bool]], *, timeout: float = 30) -> None:
    """Poll until ``condition`` holds (the timeout only keeps a broken test from hanging)."""
    with anyio.fail_after(timeout):
        while not await condition():
            await anyio.sleep(0.02)


def textly(provider: str = "textly", token: str = SECRET) -> dict[str, Any]:
    return {
        "provider": provider,
        "credentials": {
            "account_sid": "AC123",
            "auth_token": token,
            "from_number": "+15550100000",
        },
        "enabled_capabilities": ["send_sms"],
    }


def stored(api: Api, integration_id: str) -> sa.Row[Any]:
    return api.database.read_blocking(
        lambda conn: conn.execute(
            sa.select(integrations).where(integrations.c.id == integration_id)
        ).one()
    )


def assert_clean(seen: Seen, caplog: pytest.LogCaptureFixture, allowed_5xx: set[str]) -> None:
    """No secret or key material in any answer or log line; no 5xx but the named 503s."""
    for response in seen.responses:
        for canary in (SECRET, FALLBACK_SECRET, KEY_MATERIAL):
            assert canary not in response.text, (response.request.url, canary)
        if response.status_code >= 500:
            assert response.status_code == 503, response.text
            assert response.json()["code"] in allowed_5xx, response.text
    for canary in (SECRET, FALLBACK_SECRET, KEY_MATERIAL):
        assert canary not in caplog.text


async def test_a_key_provider_that_cannot_unwrap_leaves_everything_as_it_was(
    settings: Settings, plugins: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Decrypt denied at the key provider (the operator's fault): a pending verification
    stays pending through many passes without counting (two attempts would have given up),
    /ready names the key provider, a send answers 503 ``key_provider_unavailable`` with the
    operation and sends nothing, a PATCH that needs the old secret is a 503 and one that
    replaces it is not, a webhook is a 503 the provider retries. Once the key provider is
    back: the row is verified, /ready passes, the same Idempotency-Key runs again."""
    caplog.set_level(logging.DEBUG)
    async with serve(fast(settings), plugins) as api:
        seen = Seen(api.client)
        _, headers = api.tenant_token("acme")
        primary = (await seen("POST", BASE, json=textly(), headers=headers)).json()["data"]["id"]

        async def status(integration_id: str) -> str:
            view = await seen("GET", f"{BASE}/{integration_id}", headers=headers)
            return str(view.json()["data"]["status"])

        async def is_active() -> bool:
            return await status(primary) == "active"

        await eventually(is_active)
        rule = await seen(
            "POST",
            "/api/v1/routing-rules",
            json={"capability": "send_sms", "integration_id": primary, "is_default": True},
            headers=headers,
        )
        assert rule.status_code == 201

        Vaultish.unwrap_down = True
        created = await seen("POST", BASE, json=textly("chatter"), headers=headers)
        assert created.status_code == 201  # sealing (wrap) still works
        pending = created.json()["data"]["id"]
        worker = api.services.worker
        assert worker is not None
        failures = worker.failures

        async def several_passes_failed() -> bool:
            return worker.failures >= failures + 4

        await eventually(several_passes_failed)

        # A pass's claim counts an attempt and its result gives it back, in two
        # transactions: a read between them sees 1. Never more (two would have given up),
        # and 0 again once the pass has ended.
        seen_rows: list[Any] = []

        async def between_passes() -> bool:
            seen_rows.append(stored(api, pending))
            assert seen_rows[-1].verify_attempts <= 1
            return bool(seen_rows[-1].verify_attempts == 0)

        await eventually(between_passes)
        row = seen_rows[-1]
        assert row.status == "pending_verify"
        record = row.verification
        assert record["outcome"] == "transient" and record["attempts"] == 0
        assert record["last_error"] == (
            "the key provider could not open the stored credentials (KeyUnavailable); this "
            "check does not count toward the attempts"
        )
        assert "KeyUnavailable: key provider vaultish failed to unwrap: PermissionError" in (
            caplog.text
        )

        async def not_ready() -> bool:
            return (await seen("GET", "/ready")).status_code == 503

        await eventually(not_ready)
        checks = seen.responses[-1].json()["data"]["checks"]
        assert checks["key_provider"]["ok"] is False
        assert "KeyUnavailable" in checks["key_provider"]["error"]

        sent = await seen(
            "POST",
            "/api/v1/operations/send_sms",
            json=MESSAGE,
            headers={**headers, "Idempotency-Key": "kp-outage-1"},
        )
        assert sent.status_code == 503
        body = sent.json()
        assert body["success"] is False and body["code"] == "key_provider_unavailable"
        assert body["data"]["status"] == "failed"
        assert body["data"]["error"]["code"] == "key_provider_unavailable"
        assert [(a["integration_id"], a["outcome"]) for a in body["data"]["attempts"]] == [
            (primary, "transient")
        ]
        assert SENT == []  # nothing reached the provider
        operation_id = body["data"]["id"]
        ledger = await seen("GET", f"/api/v1/operations/{operation_id}", headers=headers)
        assert ledger.status_code == 200 and ledger.json()["data"]["status"] == "failed"
        assert await status(primary) == "active"  # not the tenant's fault

        public_only = await seen(
            "PATCH",
            f"{BASE}/{primary}",
            json={"credentials": {"account_sid": "AC999"}},
            headers=headers,
        )
        assert public_only.status_code == 503
        assert public_only.json()["code"] == "key_provider_unavailable"
        assert stored(api, primary).credentials_version == 1

        webhook_body = b'{"id": "ev-1", "type": "message.status"}'
        url = f"http://testserver.local/webhooks/{primary}"
        hook = await seen(
            "POST",
            f"/webhooks/{primary}",
            content=webhook_body,
            headers=webhook_headers(SECRET, webhook_body, url=url),
        )
        assert hook.status_code == 503 and hook.json()["code"] == "webhook_unavailable"

        Vaultish.unwrap_down = False

        async def verified() -> bool:
            return await status(pending) == "active"

        await eventually(verified)
        assert stored(api, pending).verify_attempts == 1  # the one check that counted

        async def ready_again() -> bool:
            return (await seen("GET", "/ready")).status_code == 200

        await eventually(ready_again)
        again = await seen(
            "POST",
            "/api/v1/operations/send_sms",
            json=MESSAGE,
            headers={**headers, "Idempotency-Key": "kp-outage-1"},
        )
        assert again.status_code == 201  # the key was released: it ran again, not replayed
        assert again.json()["data"]["id"] != operation_id
        assert [sent["token"] for sent in SENT] == [SECRET]
    assert_clean(seen, caplog, {"key_provider_unavailable", "webhook_unavailable", "not_ready"})


async def test_a_key_provider_that_is_down_falls_back_where_it_can(
    settings: Settings, plugins: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A full outage (wrap and unwrap): creating or replacing credentials is a 503 that
    stores nothing. A send whose candidates all fail for it is a 503; the integrations stay
    active and, with the key provider back, serve again."""
    caplog.set_level(logging.DEBUG)
    async with serve(fast(settings), plugins) as api:
        seen = Seen(api.client)
        _, headers = api.tenant_token("acme")
        first = (await seen("POST", BASE, json=textly(), headers=headers)).json()["data"]["id"]
        second = (
            await seen("POST", BASE, json=textly("chatter", FALLBACK_SECRET), headers=headers)
        ).json()["data"]["id"]

        async def both_active() -> bool:
            statuses = [
                (await seen("GET", f"{BASE}/{i}", headers=headers)).json()["data"]["status"]
                for i in (first, second)
            ]
            return statuses == ["active", "active"]

        await eventually(both_active)
        await seen(
            "POST",
            "/api/v1/routing-rules",
            json={
                "capability": "send_sms",
                "integration_id": first,
                "fallback_integration_id": second,
                "is_default": True,
            },
            headers=headers,
        )
        Vaultish.unwrap_down = Vaultish.wrap_down = True

        paymo = {
            "provider": "paymo",
            "credentials": {"publishable_key": "pk_1", "secret_key": SECRET},
            "enabled_capabilities": ["initiate_payment"],
        }
        create = await seen("POST", BASE, json=paymo, headers=headers)
        assert create.status_code == 503 and create.json()["code"] == "key_provider_unavailable"
        listed = await seen("GET", BASE, headers=headers)
        assert listed.json()["meta"]["total"] == 2  # nothing stored
        replace = await seen(
            "PATCH",
            f"{BASE}/{first}",
            json={"credentials": {"auth_token": SECRET + "-new"}},
            headers=headers,
        )
        assert replace.status_code == 503
        assert stored(api, first).credentials_version == 1

        sent = await seen("POST", "/api/v1/operations/send_sms", json=MESSAGE, headers=headers)
        assert sent.status_code == 503 and sent.json()["code"] == "key_provider_unavailable"
        assert [a["outcome"] for a in sent.json()["data"]["attempts"]] == [
            "transient",
            "transient",
        ]
        assert SENT == []

        Vaultish.unwrap_down = Vaultish.wrap_down = False
        served = await seen("POST", "/api/v1/operations/send_sms", json=MESSAGE, headers=headers)
        assert served.status_code == 201 and served.json()["data"]["integration_id"] == first
    assert_clean(seen, caplog, {"key_provider_unavailable", "not_ready"})
