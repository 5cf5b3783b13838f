"""The verification worker against a real database and a provider faked at the transport."""

from __future__ import annotations

import datetime as dt
import inspect
import random
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import msgspec
import pytest
import sqlalchemy as sa

from relaykit import CredentialField, Provider, VerificationResult, classify_response, hookimpl
from relaykit import tenants as tenant_store
from relaykit.errors import ConfigurationError
from relaykit.integrations import IntegrationService
from relaykit.keys import local_key_set
from relaykit.plugins import make_plugin_manager
from relaykit.settings import Settings
from relaykit.storage.database import Database
from relaykit.storage.models import integrations
from relaykit.worker import VerificationWorker, backoff_delay

from .providers_for_tests import send

SECRET = "tok_canary_4e5f6a7b8c"


async def verify(credentials: Any, ctx: Any) -> VerificationResult:
    response = await ctx.http.get("/v1/me", headers={"X-Key": credentials["api_key"]})
    return (
        classify_response(
            response,
            error_message=lambda body: body.get("message") if isinstance(body, dict) else None,
        )
        or VerificationResult.accepted()
    )


PROVIDER = Provider(
    name="acme",
    display_name="Acme",
    category="communication",
    capabilities=("send_sms",),
    credential_schema={"api_key": CredentialField(sensitive=True), "account": CredentialField()},
    api_base="https://api.acme.example",
    verify=verify,
    operations={"send_sms": send},
)


class Plugin:
    @hookimpl
    def relaykit_providers(self) -> list[Provider]:
        return [PROVIDER]


class World:
    def __init__(self, settings: Settings, database: Database) -> None:
        self.settings = settings
        self.database = database
        self.catalog = make_plugin_manager(
            load_entrypoints=False, plugins=[("acme", Plugin())]
        ).catalog()
        self.keyring = local_key_set(settings, database)
        self.service = IntegrationService(database, self.catalog, self.keyring)
        self.tenant_id = database.transaction_blocking(tenant_store.create_tenant, "acme").id
        self.calls: list[httpx.Request] = []
        self.respond: Callable[[httpx.Request], Any] = lambda r: httpx.Response(200)

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        answer = self.respond(request)
        return await answer if inspect.isawaitable(answer) else answer

    def worker(self, **overrides: Any) -> VerificationWorker:
        settings = (
            msgspec.structs.replace(self.settings, **overrides) if overrides else self.settings
        )
        return VerificationWorker(
            settings,
            self.database,
            self.catalog,
            self.keyring,
            transport=httpx.MockTransport(self.handler),
        )

    def create(self, key: str = SECRET) -> str:
        body = {
            "provider": "acme",
            "credentials": {"api_key": key, "account": "a1"},
            "enabled_capabilities": [],
        }
        return anyio.run(self.service.create, self.tenant_id, body).id

    def row(self, integration_id: str) -> sa.Row[Any]:
        return self.database.read_blocking(
            lambda conn: conn.execute(
                sa.select(integrations).where(integrations.c.id == integration_id)
            ).one()
        )

    def make_due(self, integration_id: str) -> None:
        past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        self.database.transaction_blocking(
            lambda conn: conn.execute(
                integrations.update()
                .where(integrations.c.id == integration_id)
                .values(next_verify_at=past)
            )
        )


@pytest.fixture
def world(settings: Settings, database: Database) -> World:
    return World(
        msgspec.structs.replace(settings, verify_backoff_base=10.0, verify_max_attempts=3), database
    )


def drain(worker: VerificationWorker) -> None:
    anyio.run(worker.run_until_idle)


def test_accepted_becomes_active(world: World) -> None:
    integration_id = world.create()
    drain(world.worker())
    row = world.row(integration_id)
    assert row.status == "active" and row.verified_at is not None
    assert row.verification["outcome"] == "accepted" and row.verification["attempts"] == 1
    assert row.lease_owner is None
    [call] = world.calls
    assert call.headers["x-key"] == SECRET  # unsealed in memory for the call
    view = anyio.run(world.service.get, world.tenant_id, integration_id)
    assert view.status == "active" and view.verified_at is not None
    assert view.metadata["verification"]["outcome"] == "accepted"


def test_rejected_becomes_error_with_the_message(world: World) -> None:
    world.respond = lambda r: httpx.Response(401, json={"message": "Bad key " + SECRET})
    integration_id = world.create()
    drain(world.worker())
    row = world.row(integration_id)
    assert row.status == "error" and row.verified_at is None
    assert row.verification["error"] == "Bad key [redacted]"
    assert row.verification["provider_status"] == 401


def test_transient_retries_with_backoff_then_gives_up(world: World) -> None:
    world.respond = lambda r: httpx.Response(
        503, json={"message": "maintenance"}, headers={"Retry-After": "2"}
    )
    integration_id = world.create()
    drain(world.worker())
    row = world.row(integration_id)
    assert row.status == "pending_verify" and row.verify_attempts == 1
    assert row.verification["last_error"] == "maintenance"
    wait = (row.next_verify_at - dt.datetime.now(dt.UTC)).total_seconds()
    assert 1.0 < wait <= 10.0  # at least Retry-After, at most the first cap
    drain(world.worker())
    assert len(world.calls) == 1  # not due yet: nothing claimed
    for attempt in (2, 3):
        world.make_due(integration_id)
        drain(world.worker())
        assert world.row(integration_id).verify_attempts == attempt
    row = world.row(integration_id)
    assert row.status == "error"
    assert row.verification["error"] == "Verification gave up after 3 attempts: maintenance"


def test_credentials_changed_during_the_check_discards_the_result(world: World) -> None:
    integration_id = world.create()
    rotated = "tok_canary_rotated_99"

    async def respond(request: httpx.Request) -> httpx.Response:
        if request.headers["x-key"] == SECRET:  # the old check: the tenant PATCHes meanwhile
            await world.service.update(
                world.tenant_id, integration_id, {"credentials": {"api_key": rotated}}
            )
            return httpx.Response(401, json={"message": "old key revoked"})
        return httpx.Response(200)

    world.respond = respond
    worker = world.worker()
    drain(worker)
    assert worker.stats["stale"] == 1
    row = world.row(integration_id)
    assert row.status == "active"  # decided by the check of the new key, not the old one
    assert [c.headers["x-key"] for c in world.calls] == [SECRET, rotated]
    assert row.credentials_version == 2


def test_deleted_during_the_check_stays_deleted(world: World) -> None:
    integration_id = world.create()

    async def respond(request: httpx.Request) -> httpx.Response:
        await world.service.delete(world.tenant_id, integration_id)
        return httpx.Response(200)

    world.respond = respond
    worker = world.worker()
    drain(worker)
    row = world.row(integration_id)
    assert row.deleted_at is not None and row.status == "pending_verify"
    assert worker.stats["stale"] == 1


def test_a_lease_keeps_other_workers_off_until_it_expires(world: World) -> None:
    integration_id = world.create()
    first, second = world.worker(), world.worker()
    [job] = anyio.run(first._claim, 10)
    assert job.id == integration_id and job.attempt == 1
    assert anyio.run(second._claim, 10) == []
    expired = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    world.database.transaction_blocking(
        lambda conn: conn.execute(integrations.update().values(lease_expires_at=expired))
    )
    [again] = anyio.run(second._claim, 10)
    assert again.attempt == 2
    # the first worker's late result is discarded: the lease is no longer its own
    anyio.run(first._apply, job, VerificationResult.rejected("late"))
    assert world.row(integration_id).status == "pending_verify"
    anyio.run(second._apply, again, VerificationResult.accepted())
    assert world.row(integration_id).status == "active"


def test_stopping_returns_leases_and_the_attempt(world: World) -> None:
    integration_id = world.create()
    worker = world.worker()
    anyio.run(worker._claim, 10)
    assert world.row(integration_id).lease_owner == worker.owner
    assert anyio.run(worker._release_leases) == 1
    row = world.row(integration_id)
    assert row.lease_owner is None and row.verify_attempts == 0
    assert anyio.run(world.worker()._claim, 10)[0].id == integration_id  # claimable at once


def test_a_running_worker_is_woken_by_a_write(world: World) -> None:
    async def main() -> float:
        worker = world.worker(worker_poll=30.0)  # polling alone would take 30 s
        world.service._on_pending = worker.wake
        async with anyio.create_task_group() as group:
            group.start_soon(worker.run)
            await anyio.sleep(0.2)
            started = anyio.current_time()
            integration_id = await anyio.to_thread.run_sync(world.create)
            while world.row(integration_id).status != "active":
                await anyio.sleep(0.01)
            elapsed = anyio.current_time() - started
            worker.stop()
        return elapsed

    elapsed = anyio.run(main)
    assert elapsed < 30.0  # it did not wait for the poll


def test_backoff_is_full_jitter_capped_and_respects_retry_after() -> None:
    rng = random.Random(7)
    for attempt in range(1, 12):
        ceiling = min(300.0, 2.0 * 2 ** (attempt - 1))
        delays = [
            backoff_delay(attempt, base=2.0, cap=300.0, retry_after=None, rng=rng)
            for _ in range(200)
        ]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # spread over the whole range
    assert backoff_delay(1, base=2.0, cap=300.0, retry_after=30.0, rng=rng) >= 30.0
    assert backoff_delay(1, base=2.0, cap=300.0, retry_after=9999.0, rng=rng) == 300.0


def test_lease_must_outlast_the_timeout() -> None:
    with pytest.raises(ConfigurationError, match="must be longer than"):
        Settings.from_env({"RELAYKIT_VERIFY_LEASE": "5", "RELAYKIT_VERIFY_TIMEOUT": "5"})
