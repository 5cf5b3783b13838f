"""The supervised worker: its loop outlives any exception, every check has one total deadline,
and its heartbeat tells the truth. Real database, real sockets, real keyring; only the
provider's HTTP API is a stand-in."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
import msgspec
import pytest
import sqlalchemy as sa

from relaykit import (
    CredentialField,
    Provider,
    VerificationResult,
    classify_response,
    hookimpl,
    metrics,
)
from relaykit import tenants as tenant_store
from relaykit.integrations import CREDENTIALS_UNREADABLE_MESSAGE, IntegrationService
from relaykit.keys import KeySet, LocalKeyring, custody, local_key_set
from relaykit.plugins import make_plugin_manager
from relaykit.settings import Settings
from relaykit.storage import heartbeats
from relaykit.storage import integrations as integration_rows
from relaykit.storage.database import Database
from relaykit.storage.models import integrations, worker_heartbeats
from relaykit.worker import VerificationWorker

from .providers_for_tests import send

pytestmark = pytest.mark.anyio

API_BASE_VAR = "RELAYKIT_ACME_API_BASE"
SECRET = "tok_canary_supervision_5a6b"


async def verify(credentials: Any, ctx: Any) -> VerificationResult:
    response = await ctx.http.get("/v1/me", headers={"X-Key": credentials["api_key"]})
    return (
        classify_response(response, error_message=lambda body: None, secrets=credentials)
        or VerificationResult.accepted()
    )


PROVIDER = Provider(
    name="acme",
    display_name="Acme",
    category="communication",
    capabilities=("send_sms",),
    credential_schema={"api_key": CredentialField(sensitive=True)},
    api_base="https://api.acme.example",
    verify=verify,
    operations={"send_sms": send},
)


class Plugin:
    @hookimpl
    def relaykit_providers(self) -> list[Provider]:
        return [PROVIDER]


class FlakyKeys:
    """The local keyring as a key provider whose ``wrap`` and ``unwrap`` raise RuntimeError
    (as a KMS client might) while ``failing``; the message carries what must never be
    shown. It sits inside a real :class:`KeySet`, which maps its failures to KeyUnavailable
    and counts them."""

    name = "local"
    in_process = True

    def __init__(self, keyring: LocalKeyring) -> None:
        self.keyring = keyring
        self.failing = False

    @property
    def default_key_id(self) -> str:
        return self.keyring.default_key_id

    def wrap(self, key_id: str, data_key: bytes, associated_data: bytes) -> bytes:
        if self.failing:
            raise RuntimeError("kms unreachable; key material kek-secret-9f8e")
        return self.keyring.wrap(key_id, data_key, associated_data)

    def unwrap(self, key_id: str, wrapped: bytes, associated_data: bytes) -> bytes:
        if self.failing:
            raise RuntimeError("kms unreachable; key material kek-secret-9f8e")
        return self.keyring.unwrap(key_id, wrapped, associated_data)


def flaky_key_set(settings: Settings, database: Database) -> tuple[KeySet, FlakyKeys]:
    """A key set attached to ``database`` whose only provider is the local keyring behind
    :class:`FlakyKeys`."""
    keyring = local_key_set(settings, database).local  # made on the empty database
    assert keyring is not None
    flaky = FlakyKeys(keyring)
    keys = KeySet({"local": flaky}, keyring_path=settings.keyring, local=keyring)
    custody.attach(keys, database, settings)
    return keys, flaky


class World:
    """Tenants with one integration each (a tenant has one per provider), a worker factory."""

    def __init__(self, settings: Settings, database: Database) -> None:
        self.settings = settings
        self.database = database
        self.catalog = make_plugin_manager(
            load_entrypoints=False, plugins=[("acme", Plugin())]
        ).catalog()
        self.keys, self.flaky = flaky_key_set(settings, database)
        self.service = IntegrationService(database, self.catalog, self.keys)
        self._tenants = 0

    def worker(
        self,
        *,
        answer: Callable[[httpx.Request], Awaitable[httpx.Response]] | None = None,
        **overrides: Any,
    ) -> VerificationWorker:
        """A worker with ``overrides`` to its settings, whose provider calls ``answer``
        (else go over the network)."""
        settings = msgspec.structs.replace(self.settings, **overrides)
        transport = httpx.MockTransport(answer) if answer is not None else None
        return VerificationWorker(
            settings, self.database, self.catalog, self.keys, transport=transport
        )

    async def create(self, key: str = SECRET) -> str:
        self._tenants += 1
        tenant = await self.database.transaction(tenant_store.create_tenant, f"t{self._tenants}")
        body = {"provider": "acme", "credentials": {"api_key": key}, "enabled_capabilities": []}
        return (await self.service.create(tenant.id, body)).id

    async def row(self, integration_id: str) -> sa.Row[Any]:
        return await self.database.read(
            lambda conn: conn.execute(
                sa.select(integrations).where(integrations.c.id == integration_id)
            ).one()
        )

    async def heartbeat(self, owner: str) -> sa.Row[Any] | None:
        return await self.database.read(heartbeats.latest, owner)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def world(settings: Settings, database: Database) -> World:
    return World(settings, database)


async def eventually(condition: Callable[[], Awaitable[bool]], *, timeout: float = 20) -> None:
    """Poll ``condition`` until it holds (the timeout only stops a broken test hanging)."""
    with anyio.fail_after(timeout):
        while not await condition():
            await anyio.sleep(0.02)


def counter(metric: Any, *labels: str) -> float:
    return float(metric.labels(*labels)._value.get()) if labels else float(metric._value.get())


async def test_the_loop_survives_an_exception_from_the_claim(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A RuntimeError from the claim used to end the loop for good. Now each failed pass is
    logged, counted and recorded on the heartbeat, and the loop goes on once the cause goes."""
    real_claim = integration_rows.claim_due_verifications
    failures = {"left": 3}

    def claim(conn: sa.Connection, **kwargs: Any) -> list[sa.Row[Any]]:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise RuntimeError("injected claim failure")
        return real_claim(conn, **kwargs)

    monkeypatch.setattr(integration_rows, "claim_due_verifications", claim)

    async def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)

    worker = world.worker(answer=answer, worker_poll=0.05, worker_heartbeat=0.2)
    before = counter(metrics.WORKER_LOOP_ERRORS, "RuntimeError")
    integration_id = await world.create()
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        await eventually(lambda: _status_is(world, integration_id, "active"))
        await eventually(lambda: _last_error_is(world, worker.owner, None))  # beating again
        row = await world.heartbeat(worker.owner)
        worker.stop()
    assert failures["left"] == 0
    assert worker.failures == 3
    assert counter(metrics.WORKER_LOOP_ERRORS, "RuntimeError") - before == 3
    assert row is not None and row.failures == 3
    assert await world.heartbeat(worker.owner) is None  # a clean stop removes the row


async def _status_is(world: World, integration_id: str, status: str) -> bool:
    return bool((await world.row(integration_id)).status == status)


async def test_a_failed_pass_leaves_the_beat_stale_and_records_the_error(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = {"on": False}
    real_claim = integration_rows.claim_due_verifications

    def claim(conn: sa.Connection, **kwargs: Any) -> list[sa.Row[Any]]:
        if blocked["on"]:
            raise RuntimeError("injected")
        return real_claim(conn, **kwargs)

    monkeypatch.setattr(integration_rows, "claim_due_verifications", claim)
    worker = world.worker(worker_poll=0.05, worker_heartbeat=0.2)
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        await eventually(lambda: _has_heartbeat(world, worker.owner))
        first = await world.heartbeat(worker.owner)
        blocked["on"] = True
        await eventually(lambda: _last_error_is(world, worker.owner, "RuntimeError"))
        failing = await world.heartbeat(worker.owner)
        assert first is not None and failing is not None
        # More passes fail: each records its failure, none beats.
        await eventually(lambda: _failures_over(world, worker.owner, failing.failures + 2))
        later = await world.heartbeat(worker.owner)
        assert later is not None and later.beat_at == failing.beat_at
        assert later.last_error == "RuntimeError"
        blocked["on"] = False
        await eventually(lambda: _last_error_is(world, worker.owner, None))
        healed = await world.heartbeat(worker.owner)
        assert healed is not None and healed.beat_at > failing.beat_at
        worker.stop()


async def _failures_over(world: World, owner: str, failures: int) -> bool:
    row = await world.heartbeat(owner)
    return row is not None and row.failures >= failures


async def _has_heartbeat(world: World, owner: str) -> bool:
    return await world.heartbeat(owner) is not None


async def _last_error_is(world: World, owner: str, error: str | None) -> bool:
    row = await world.heartbeat(owner)
    return row is not None and row.last_error == error and (error is None or row.failures > 0)


def test_retry_delay_doubles_up_to_the_heartbeat_interval(world: World) -> None:
    worker = world.worker(worker_poll=1.0, worker_heartbeat=10.0)
    ceilings = [1, 2, 4, 8, 10, 10]
    for failing, ceiling in enumerate(ceilings, start=1):
        for _ in range(20):
            assert ceiling / 2 <= worker.retry_delay(failing) <= ceiling


def test_an_idle_worker_passes_often_enough_to_keep_its_heartbeat_fresh(world: World) -> None:
    assert world.worker(worker_poll=1.0, worker_heartbeat=10.0).idle_wait == 1.0
    # a poll longer than half the heartbeat interval would let an idle worker's beat go stale
    assert world.worker(worker_poll=30.0, worker_heartbeat=10.0).idle_wait == 5.0


async def test_a_key_provider_failure_makes_the_check_transient_not_rejected(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """A KMS outage says nothing about the credentials: the check is retried without
    counting (however many passes fail, with a two-attempt limit the row never gives up),
    the pass is a failed one, and neither the log nor the row shows the provider's message.
    Once the key provider is back the row is verified."""
    calls: list[str] = []

    async def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers["x-key"])
        return httpx.Response(200)

    worker = world.worker(
        answer=answer,
        worker_poll=0.05,
        worker_heartbeat=0.2,
        verify_backoff_base=0.05,
        verify_backoff_max=0.1,
        verify_max_attempts=2,
    )
    integration_id = await world.create()
    world.flaky.failing = True
    before = counter(metrics.WORKER_LOOP_ERRORS, "KeyUnavailable")
    errors_before = counter(metrics.KEY_PROVIDER_ERRORS, "local", "unwrap")
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        # several failed passes: more than verify_max_attempts if they counted
        await eventually(lambda: _key_failures_over(worker, 4))
        await eventually(lambda: _attempted(world, integration_id))
        row = await world.row(integration_id)
        assert row.status == "pending_verify"
        assert row.verify_attempts == 0  # never counted
        assert row.verification["outcome"] == "transient"
        assert row.verification["attempts"] == 0
        assert row.verification["last_error"] == (
            "the key provider could not open the stored credentials (KeyUnavailable); this "
            "check does not count toward the attempts"
        )
        assert "kek-secret" not in str(row.verification)
        assert counter(metrics.WORKER_LOOP_ERRORS, "KeyUnavailable") > before
        assert counter(metrics.KEY_PROVIDER_ERRORS, "local", "unwrap") > errors_before
        beat = await world.heartbeat(worker.owner)
        assert beat is not None and beat.last_error == "KeyUnavailable"
        assert calls == []
        world.flaky.failing = False
        await eventually(lambda: _status_is(world, integration_id, "active"))
        worker.stop()
    assert calls and set(calls) == {SECRET}
    assert "kek-secret" not in caplog.text
    assert SECRET not in caplog.text
    assert "KeyUnavailable: key provider local failed to unwrap: RuntimeError" in caplog.text


async def _key_failures_over(worker: VerificationWorker, passes: int) -> bool:
    return worker.failures >= passes


async def test_credentials_that_fail_authentication_are_rejected_with_the_reason(
    world: World,
) -> None:
    """One row's blob swapped for another's (the key provider works): that integration's
    fault, rejected at once with a message saying so; the other row is verified."""
    calls: list[str] = []

    async def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers["x-key"])
        return httpx.Response(200)

    broken = await world.create("tok_broken_row_1111")
    donor = await world.create("tok_donor_row_2222")
    donor_blob = (await world.row(donor)).sealed_credentials
    await world.database.transaction(
        lambda conn: conn.execute(
            sa.update(integrations)
            .where(integrations.c.id == broken)
            .values(sealed_credentials=donor_blob)
        )
    )
    errors_before = counter(metrics.KEY_PROVIDER_ERRORS, "local", "unwrap")
    await world.worker(answer=answer).run_until_idle()
    row = await world.row(broken)
    assert row.status == "error"
    assert row.verification["outcome"] == "rejected"
    assert row.verification["error"] == CREDENTIALS_UNREADABLE_MESSAGE
    assert "Send every sensitive credential field again" in row.verification["error"]
    assert (await world.row(donor)).status == "active"
    assert calls == ["tok_donor_row_2222"]  # nothing sent for the broken row
    # the blob's fault is not the key provider's
    assert counter(metrics.KEY_PROVIDER_ERRORS, "local", "unwrap") == errors_before


async def _attempted(world: World, integration_id: str) -> bool:
    row = await world.row(integration_id)
    return row.verification is not None and row.lease_owner is None


async def test_dead_workers_heartbeats_are_swept(world: World) -> None:
    now = dt.datetime.now(dt.UTC)
    await world.database.transaction(
        heartbeats.beat, "gone:1", started_at=now, now=now - dt.timedelta(seconds=30), failures=0
    )
    await world.database.transaction(
        heartbeats.beat, "alive:2", started_at=now, now=now, failures=0
    )
    worker = world.worker(worker_poll=0.05, worker_heartbeat=1.0)  # stale after 10 s
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        await eventually(lambda: _has_heartbeat(world, worker.owner))
        worker.stop()
    owners = await world.database.read(
        lambda conn: set(conn.execute(sa.select(worker_heartbeats.c.owner)).scalars())
    )
    assert owners == {"alive:2"}


# -- the total deadline of one check -----------------------------------------------------------


class Trickler:
    """A provider stand-in on a real socket: for the key ``slow`` it sends its headers, then
    one byte of body a second for ever (each byte resets httpx's per-phase read timeout);
    for any other key it answers 200 at once. It records the order of what happens."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                key = next(
                    line.split(b":", 1)[1].strip().decode()
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"x-key:")
                )
                if key != "slow":
                    self.events.append("fast")
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                    await writer.drain()
                    continue
                self.events.append("slow started")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
                await writer.drain()
                while True:
                    writer.write(b" ")
                    await writer.drain()
                    if reader.at_eof():
                        break
                    with anyio.move_on_after(1):
                        if await reader.read(1) == b"":
                            break
                self.events.append("slow cut")
                return
        except (ConnectionError, asyncio.IncompleteReadError):
            if "slow started" in self.events and "slow cut" not in self.events:
                self.events.append("slow cut")
        finally:
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_a_trickling_provider_is_cut_at_the_deadline_and_the_others_flow(
    world: World,
) -> None:
    trickler = Trickler()
    base = await trickler.start()
    try:
        worker = world.worker(
            worker_concurrency=2,
            worker_poll=0.05,
            verify_timeout=1.5,
            api_bases={API_BASE_VAR: base},
        )
        slow = await world.create("slow")
        fast = [await world.create(f"fast-{n}") for n in range(4)]
        async with anyio.create_task_group() as group:
            group.start_soon(worker.run)
            await eventually(lambda: _attempted(world, slow))
            for integration_id in fast:
                await eventually(lambda i=integration_id: _status_is(world, i, "active"))
            worker.stop()
        row = await world.row(slow)
        assert row.status == "pending_verify"  # transient: retried later
        assert row.verification["outcome"] == "transient"
        assert (
            row.verification["last_error"] == "the provider did not answer in time (within 1.5 s)"
        )
        assert row.lease_owner is None  # the slot and the lease are free
        # The other checks ran while the slow one held its slot, before it was cut.
        await eventually(lambda: _cut(trickler))
        events = trickler.events
        assert events.count("fast") == 4 and events.count("slow started") == 1
        held = events[events.index("slow started") : events.index("slow cut")]
        assert held.count("fast") >= 3  # fast-0 may have gone first, in the other slot
    finally:
        await trickler.close()


async def _cut(trickler: Trickler) -> bool:
    return "slow cut" in trickler.events


async def test_verifications_are_counted_by_provider_and_outcome(world: World) -> None:
    answers = {"good": 200, "bad": 401}

    async def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(answers[request.headers["x-key"]])

    def count(outcome: str) -> float:
        return counter(metrics.VERIFICATIONS, "acme", outcome)

    before = {outcome: count(outcome) for outcome in ("accepted", "rejected")}
    await world.create("good")
    await world.create("bad")
    await world.worker(answer=answer).run_until_idle()
    assert count("accepted") - before["accepted"] == 1
    assert count("rejected") - before["rejected"] == 1


def test_no_busy_loop_after_failures(world: World) -> None:
    """The delay after a failure is never zero: a loop that keeps failing waits."""
    worker = world.worker(worker_poll=0.001, worker_heartbeat=0.001)
    assert worker.retry_delay(1) >= 0.025
    assert 0.025 <= worker.retry_delay(100_000) <= 0.05  # a day-long outage: still bounded


async def test_a_claim_of_an_expired_lease_is_counted_as_a_reclaim(world: World) -> None:
    """Worker A claims and dies holding the lease; once it expires worker B's claim takes the
    row over: one reclaim. A first claim, or one after a released lease, is none."""
    first = await world.create()
    second = await world.create()
    dead, alive = world.worker(), world.worker()
    before = counter(metrics.LEASE_RECLAIMS)
    assert {job.id for job in await dead._claim(2)} == {first, second}  # A dies holding both
    await world.database.transaction(
        lambda conn: conn.execute(
            sa.update(integrations)
            .where(integrations.c.id == first)
            .values(lease_expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    )
    claimed = await alive._claim(2)  # only the expired one is free
    assert [job.id for job in claimed] == [first] and claimed[0].lease_reclaimed
    assert counter(metrics.LEASE_RECLAIMS) - before == 1
    await alive._release_leases()  # a returned lease is not an expired one
    again = await world.worker()._claim(2)
    assert [job.id for job in again] == [first] and not again[0].lease_reclaimed
    assert counter(metrics.LEASE_RECLAIMS) - before == 1


async def test_key_provider_errors_are_counted_by_operation(world: World) -> None:
    integration_id = await world.create()
    before = counter(metrics.KEY_PROVIDER_ERRORS, "local", "unwrap")
    world.flaky.failing = True
    [job] = await world.worker()._claim(1)
    assert job.id == integration_id and job.key_error == "KeyUnavailable"
    assert job.key_detail == "KeyUnavailable: key provider local failed to unwrap: RuntimeError"
    assert counter(metrics.KEY_PROVIDER_ERRORS, "local", "unwrap") - before == 1
