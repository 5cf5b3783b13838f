"""``GET /ready`` on the real app (its lifespan, the embedded worker, the real database and
keyring), and the supervised worker seen through it."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import pytest
import sqlalchemy as sa
from alembic import command
from litestar.testing import AsyncTestClient

from relaykit import hookimpl, readiness
from relaykit.ids import utcnow
from relaykit.keys import KeyProviderSpec, KeyringMissing, LocalKeyring, custody
from relaykit.plugins import RelaykitPluginManager, make_plugin_manager
from relaykit.readiness import CHECK_TIMEOUT_SECONDS
from relaykit.settings import Settings
from relaykit.storage import heartbeats
from relaykit.storage import integrations as integration_rows
from relaykit.storage.database import open_database
from relaykit.storage.schema import alembic_config, current_revision, head_revision
from relaykit_server import create_app

from .conftest import Api, TestProviders

pytestmark = pytest.mark.anyio

CHECKS = ("database", "schema", "key_provider", "worker")
KEY_MATERIAL = "kek-material-canary-77aa"


class FlakyKeys:
    """A plugin's key provider (a keyring file of its own) whose ``unwrap`` raises
    RuntimeError (as a KMS client might, with key material in its message) while
    ``failing``."""

    name = "flaky"
    in_process = True
    failing = False

    def __init__(self, settings: Settings) -> None:
        path = settings.home / "flaky-keyring.json"
        try:
            self.keyring = LocalKeyring(path)
        except KeyringMissing:
            self.keyring = LocalKeyring.create(path)

    @property
    def default_key_id(self) -> str:
        return self.keyring.default_key_id

    def wrap(self, key_id: str, data_key: bytes, associated_data: bytes) -> bytes:
        return self.keyring.wrap(key_id, data_key, associated_data)

    def unwrap(self, key_id: str, wrapped: bytes, associated_data: bytes) -> bytes:
        if FlakyKeys.failing:
            raise RuntimeError(f"KMS: access denied for {KEY_MATERIAL}")
        return self.keyring.unwrap(key_id, wrapped, associated_data)


class FlakyKeysPlugin:
    @hookimpl
    def relaykit_key_providers(self) -> list[KeyProviderSpec]:
        return [KeyProviderSpec("flaky", FlakyKeys)]


@pytest.fixture
def plugins() -> RelaykitPluginManager:
    FlakyKeys.failing = False
    return make_plugin_manager(
        load_entrypoints=False,
        plugins=[("test-providers", TestProviders()), ("flaky-keys", FlakyKeysPlugin())],
    )


def configure(settings: Settings, **overrides: Any) -> Settings:
    return msgspec.structs.replace(settings, **overrides)


@contextlib.asynccontextmanager
async def serve(settings: Settings, plugins: RelaykitPluginManager) -> AsyncIterator[Api]:
    """The app with its lifespan (and its embedded worker when the settings say so)."""
    app = create_app(settings, plugin_manager=plugins)
    async with AsyncTestClient(app=app) as client:
        database = open_database(settings, migrate=False)
        try:
            yield Api(client, database)
        finally:
            database.dispose()


async def eventually(condition: Callable[[], Awaitable[bool]], *, timeout: float = 30) -> None:
    """Poll until ``condition`` holds (the timeout only keeps a broken test from hanging)."""
    with anyio.fail_after(timeout):
        while not await condition():
            await anyio.sleep(0.02)


async def ready(api: Api) -> httpx.Response:
    return await api.client.get("/ready")


def failing(response: httpx.Response) -> list[str]:
    checks = response.json()["data"]["checks"]
    return [name for name in CHECKS if not checks[name]["ok"]]


async def status_is(api: Api, status: int) -> bool:
    return (await ready(api)).status_code == status


async def test_ready_when_every_check_passes(settings: Settings, plugins: Any) -> None:
    async with serve(configure(settings, embedded_worker=True), plugins) as api:
        await eventually(lambda: status_is(api, 200))  # once the worker has beaten
        response = await ready(api)  # no token
        assert response.json() == {
            "success": True,
            "message": "Ready",
            "data": {"status": "ready", "checks": {name: {"ok": True} for name in CHECKS}},
            "meta": {},
        }
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["content-type"].startswith("application/json")


async def test_the_worker_loop_survives_an_exception_and_ready_says_so_meanwhile(
    settings: Settings, plugins: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A RuntimeError from the claim used to end the embedded worker's loop for good while the
    API went on serving. Now /ready names the worker while its claims fail, the loop goes on
    when the cause goes, and the integration created meanwhile is verified."""
    real_claim = integration_rows.claim_due_verifications
    broken = threading.Event()

    def claim(conn: sa.Connection, **kwargs: Any) -> list[sa.Row[Any]]:
        if broken.is_set():
            raise RuntimeError("injected: the claim path failed")
        return real_claim(conn, **kwargs)

    monkeypatch.setattr(integration_rows, "claim_due_verifications", claim)
    fast = configure(settings, embedded_worker=True, worker_poll=0.05, worker_heartbeat=1.0)
    async with serve(fast, plugins) as api:
        await eventually(lambda: status_is(api, 200))
        broken.set()
        _, headers = api.tenant_token("acme")
        created = await api.client.post("/api/v1/integrations", json=TEXTLY, headers=headers)
        assert created.status_code == 201
        integration_id = created.json()["data"]["id"]

        await eventually(lambda: status_is(api, 503))
        response = await ready(api)
        body = response.json()
        assert body["success"] is False and body["code"] == "not_ready"
        assert body["message"] == "Not ready: worker"
        assert failing(response) == ["worker"]
        error = body["data"]["checks"]["worker"]["error"]
        assert error.startswith("no heartbeat for ") and "last error: RuntimeError" in error
        assert "injected" not in response.text  # the type, not the message
        view = await api.client.get(f"/api/v1/integrations/{integration_id}", headers=headers)
        assert view.json()["data"]["status"] == "pending_verify"  # nothing was claimed

        broken.clear()
        await eventually(lambda: status_is(api, 200))
        await eventually(lambda: integration_status(api, headers, integration_id, "active"))
        assert api.services.worker is not None and api.services.worker.failures > 0


TEXTLY = {
    "provider": "textly",
    "credentials": {
        "account_sid": "AC123",
        "auth_token": "auth_token_canary_5678",
        "from_number": "+15550100000",
    },
    "enabled_capabilities": ["send_sms"],
}


async def integration_status(
    api: Api, headers: dict[str, str], integration_id: str, status: str
) -> bool:
    view = await api.client.get(f"/api/v1/integrations/{integration_id}", headers=headers)
    return bool(view.json()["data"]["status"] == status)


async def test_a_schema_behind_head_is_named(settings: Settings, plugins: Any) -> None:
    async with serve(configure(settings, embedded_worker=True), plugins) as api:
        await eventually(lambda: status_is(api, 200))
        config = alembic_config()

        def downgrade(conn: sa.Connection) -> None:
            config.attributes["connection"] = conn
            command.downgrade(config, "-1")

        api.database.transaction_blocking(downgrade)  # behind the app's back
        behind = current_revision(api.database)
        assert behind is not None and behind != head_revision()
        response = await ready(api)
        assert response.status_code == 503
        assert "schema" in failing(response)
        assert response.json()["message"].startswith("Not ready: ")
        assert "schema" in response.json()["message"]
        assert response.json()["data"]["checks"]["schema"]["error"] == (
            f"the database is at revision {behind}, the code needs {head_revision()}: "
            "run `relaykit db upgrade`"
        )
        assert response.json()["data"]["checks"]["database"] == {"ok": True}


async def test_a_key_provider_that_cannot_unwrap_is_named(settings: Settings, plugins: Any) -> None:
    async with serve(configure(settings, key_provider="flaky"), plugins) as api:
        FlakyKeys.failing = True
        response = await ready(api)
        assert response.status_code == 503
        checks = response.json()["data"]["checks"]
        assert checks["key_provider"] == {
            "ok": False,
            "error": "a probe key could not be wrapped and unwrapped (KeyUnavailable)",
        }
        assert KEY_MATERIAL not in response.text
        assert "key_provider" in response.json()["message"]
        FlakyKeys.failing = False
        assert (await ready(api)).json()["data"]["checks"]["key_provider"] == {"ok": True}


async def test_ready_fails_while_the_key_provider_fails_during_verification(
    settings: Settings, plugins: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key check passed (and is kept for a while); then the provider fails while the
    worker opens a pending integration's credentials. /ready fails from then on, not at the
    end of the kept answer; the row stays pending and is retried; when the provider
    recovers, /ready passes and the row is verified."""
    monkeypatch.setattr(readiness, "KEY_CHECK_TTL_SECONDS", 3600.0)  # kept all test long
    fast = configure(
        settings,
        key_provider="flaky",
        embedded_worker=True,
        worker_poll=0.05,
        verify_backoff_base=0.05,
        verify_backoff_max=0.2,
    )
    async with serve(fast, plugins) as api:
        await eventually(lambda: status_is(api, 200))  # the key check passed: kept 5 s
        FlakyKeys.failing = True
        _, headers = api.tenant_token("acme")
        created = await api.client.post("/api/v1/integrations", json=TEXTLY, headers=headers)
        assert created.status_code == 201  # sealing wraps, which works
        integration_id = created.json()["data"]["id"]
        await eventually(lambda: status_is(api, 503))
        response = await ready(api)
        assert failing(response) == ["key_provider"]
        assert KEY_MATERIAL not in response.text
        assert api.services.key_provider.failures > 0
        view = await api.client.get(f"/api/v1/integrations/{integration_id}", headers=headers)
        assert view.json()["data"]["status"] == "pending_verify"

        FlakyKeys.failing = False
        await eventually(lambda: status_is(api, 200))
        await eventually(lambda: integration_status(api, headers, integration_id, "active"))


async def test_ready_fails_while_a_key_in_use_is_missing_from_the_keyring(
    settings: Settings, plugins: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The primary key works (the probe wraps and unwraps under it), but an older key a live
    row still uses is missing from this node's keyring: the worker cannot open that row, and
    /ready says so until the key is back."""
    monkeypatch.setattr(readiness, "KEY_CHECK_TTL_SECONDS", 3600.0)
    fast = configure(settings, embedded_worker=True, worker_poll=0.05, verify_backoff_max=0.2)
    async with serve(fast, plugins) as api:
        await eventually(lambda: status_is(api, 200))
        _, headers = api.tenant_token("acme")
        created = await api.client.post("/api/v1/integrations", json=TEXTLY, headers=headers)
        integration_id = created.json()["data"]["id"]
        await eventually(lambda: integration_status(api, headers, integration_id, "active"))
        keys = api.services.key_provider
        assert keys.local is not None
        old_key = keys.primary_key_id
        custody.rotate(keys, "local")
        whole = keys.local.path.read_bytes()  # both keys: what a restore brings back
        keys.local.remove_key(old_key)  # as a node whose copy of the keyring lacks it
        # the row (still sealed under the old key) is due for verification again
        api.database.transaction_blocking(
            lambda conn: conn.execute(
                integration_rows.t.update()
                .where(integration_rows.t.c.id == integration_id)
                .values(status="pending_verify", next_verify_at=utcnow())
            )
        )
        await eventually(lambda: status_is(api, 503))
        assert failing(await ready(api)) == ["key_provider"]
        view = await api.client.get(f"/api/v1/integrations/{integration_id}", headers=headers)
        assert view.json()["data"]["status"] == "pending_verify"

        restored = keys.local.path.with_name("restored.json")
        restored.write_bytes(whole)
        restored.chmod(0o600)
        os.replace(restored, keys.local.path)
        await eventually(lambda: status_is(api, 200))
        await eventually(lambda: integration_status(api, headers, integration_id, "active"))


async def test_without_any_worker_the_worker_check_fails(settings: Settings, plugins: Any) -> None:
    async with serve(settings, plugins) as api:  # RELAYKIT_EMBEDDED_WORKER=0
        response = await ready(api)
        assert response.status_code == 503
        assert response.json()["message"] == "Not ready: worker"
        assert response.json()["data"]["checks"]["worker"] == {
            "ok": False,
            "error": "no worker has a heartbeat (RELAYKIT_EMBEDDED_WORKER is off: run "
            "`relaykit worker`)",
        }


async def test_a_stale_heartbeat_says_how_old_and_why(settings: Settings, plugins: Any) -> None:
    async with serve(configure(settings, worker_heartbeat=5.0), plugins) as api:
        long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=60)
        api.database.transaction_blocking(
            heartbeats.beat, "host:1:a", started_at=long_ago, now=long_ago, failures=0
        )
        api.database.transaction_blocking(
            heartbeats.record_failure,
            "host:1:a",
            started_at=long_ago,
            error="OperationalError",
            failures=7,
        )
        error = (await ready(api)).json()["data"]["checks"]["worker"]["error"]
        age = int(error.removeprefix("no heartbeat for ").split(" ")[0])
        assert 60 <= age < 120
        assert error.endswith("(last error: OperationalError; 7 failed claim passes)")


def worker_env(settings: Settings, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYKIT_")}
    env["RELAYKIT_HOME"] = str(settings.home)
    env["RELAYKIT_DATABASE_URL"] = database_url
    env["RELAYKIT_WORKER_POLL"] = "0.2"
    return env


@contextlib.contextmanager
def relaykit_worker(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "relaykit", "worker"], env=env, stdout=out, stderr=out
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


async def test_a_separate_worker_process_makes_the_api_ready(
    settings: Settings, plugins: Any, database_url: str, tmp_path: Path
) -> None:
    async with serve(settings, plugins) as api:  # RELAYKIT_EMBEDDED_WORKER=0
        assert (await ready(api)).status_code == 503
        log = tmp_path / "worker.log"
        with relaykit_worker(worker_env(settings, database_url), log) as process:

            async def up() -> bool:
                assert process.poll() is None, log.read_text()
                return await status_is(api, 200)

            await eventually(up)
            process.send_signal(signal.SIGTERM)  # a clean stop deletes its heartbeat
            assert await anyio.to_thread.run_sync(lambda: process.wait(timeout=30)) == 0
        response = await ready(api)
        assert response.status_code == 503 and failing(response) == ["worker"]


async def test_a_hung_database_does_not_hang_the_probe(
    settings: Settings, plugins: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    real_ping = heartbeats.ping

    def hung(conn: sa.Connection) -> None:
        release.wait(60)
        real_ping(conn)

    async with serve(settings, plugins) as api:
        monkeypatch.setattr(heartbeats, "ping", hung)
        try:
            response = await ready(api)
        finally:
            release.set()
        assert response.status_code == 503
        assert response.json()["data"]["checks"]["database"] == {
            "ok": False,
            "error": f"no answer within {CHECK_TIMEOUT_SECONDS:g} s",
        }
        assert response.json()["data"]["checks"]["schema"] == {"ok": True}


async def test_ready_is_declared_in_the_openapi_document(api: Api) -> None:
    document = (await api.client.get("/schema/openapi.json")).json()
    operation = document["paths"]["/ready"]["get"]
    assert operation["security"] == []
    assert set(operation["responses"]) == {"200", "503"}
    schemas = document["components"]["schemas"]
    for status, name in (("200", "ReadyEnvelope"), ("503", "NotReadyBody")):
        schema = operation["responses"][status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{name}"}
    assert schemas["ReadinessCheck"]["required"] == ["ok"]
    assert set(schemas["ReadinessChecks"]["properties"]) == set(CHECKS)
