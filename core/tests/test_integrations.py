"""The integration service's PATCH of credentials when another write gets in between its
read and its write: it seals outside any transaction, so it must notice and start again."""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import pytest
import sqlalchemy as sa

from relaykit import tenants
from relaykit.errors import ConflictError
from relaykit.ids import utcnow
from relaykit.integrations import UPDATE_TRIES, IntegrationService
from relaykit.keys import LocalKeyring
from relaykit.lifecycle import Action
from relaykit.plugins import make_plugin_manager
from relaykit.sealing import SealContext, open_credentials
from relaykit.settings import Settings
from relaykit.storage import integrations as integration_rows
from relaykit.storage.database import Database, open_database
from relaykit.storage.models import integrations

from .providers_for_tests import OneProvider, make_provider

pytestmark = pytest.mark.anyio
T = TypeVar("T")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class InterferingKeyring:
    """The local keyring, plus a hook that runs before each wrap: a key provider is where a
    PATCH waits outside any transaction, so that is where another write can get in."""

    name = "local"
    in_process = True

    def __init__(self, keyring: LocalKeyring) -> None:
        self.keyring = keyring
        self.before_wrap: Callable[[], None] = lambda: None
        self.wraps = 0

    @property
    def primary_key_id(self) -> str:
        return self.keyring.primary_key_id

    def wrap(self, data_key: bytes, associated_data: bytes) -> tuple[str, bytes]:
        self.wraps += 1
        self.before_wrap()
        return self.keyring.wrap(data_key, associated_data)

    def unwrap(self, key_id: str, wrapped: bytes, associated_data: bytes) -> bytes:
        return self.keyring.unwrap(key_id, wrapped, associated_data)


@pytest.fixture
def world(settings: Settings, database: Database) -> tuple[IntegrationService, Any, str]:
    catalog = make_plugin_manager(
        load_entrypoints=False, plugins=[("acme", OneProvider(make_provider()))]
    ).catalog()
    keys = InterferingKeyring(LocalKeyring.in_home(settings.home))
    tenant_id = database.transaction_blocking(tenants.create_tenant, "acme").id
    return IntegrationService(database, catalog, keys), keys, tenant_id  # type: ignore[arg-type]


def bump_version(database: Database, integration_id: str) -> None:
    """Another process's write: the row's credentials change under the PATCH."""
    database.transaction_blocking(
        lambda conn: conn.execute(
            integrations.update()
            .where(integrations.c.id == integration_id)
            .values(credentials_version=integrations.c.credentials_version + 1)
        )
    )


def version(database: Database, integration_id: str) -> int:
    return int(
        database.read_blocking(
            lambda conn: conn.execute(
                sa.select(integrations.c.credentials_version).where(
                    integrations.c.id == integration_id
                )
            ).scalar_one()
        )
    )


BODY = {
    "provider": "acme",
    "credentials": {"api_key": "key-first-0001", "account": "a1"},
    "enabled_capabilities": ["send_sms"],
}


async def test_a_patch_that_lost_a_race_starts_again_and_keeps_the_winner(
    world: tuple[IntegrationService, Any, str], database: Database
) -> None:
    service, keys, tenant_id = world
    created = await service.create(tenant_id, BODY)
    raced: list[int] = []

    def once() -> None:
        if not raced:
            raced.append(1)
            bump_version(database, created.id)  # version 1 -> 2 while the PATCH seals

    keys.before_wrap = once
    keys.wraps = 0
    updated = await service.update(
        tenant_id, created.id, {"credentials": {"api_key": "key-second-0002"}}
    )
    assert keys.wraps == 2  # sealed, found the row changed, read it again, sealed again
    assert updated.status == "pending_verify"
    assert version(database, created.id) == 3  # built on the winner's 2, not over it
    row = database.read_blocking(
        lambda conn: conn.execute(
            sa.select(integrations).where(integrations.c.id == created.id)
        ).one()
    )
    opened = open_credentials(
        row.sealed_credentials, SealContext(tenant_id, created.id, "acme"), keys
    )
    assert opened == {"api_key": "key-second-0002"}


async def test_a_patch_that_keeps_losing_gives_up_with_a_conflict(
    world: tuple[IntegrationService, Any, str], database: Database
) -> None:
    service, keys, tenant_id = world
    created = await service.create(tenant_id, BODY)
    keys.before_wrap = lambda: bump_version(database, created.id)
    keys.wraps = 0
    with pytest.raises(ConflictError, match="kept changing"):
        await service.update(tenant_id, created.id, {"credentials": {"api_key": "key-third-03"}})
    assert keys.wraps == UPDATE_TRIES
    assert version(database, created.id) == 1 + UPDATE_TRIES  # only the other writer's bumps


def elsewhere(call: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``await call(*args)`` on a thread and an event loop of its own, to the end: another
    request, served meanwhile."""
    done: list[T] = []
    thread = threading.Thread(target=lambda: done.append(anyio.run(call, *args)))
    thread.start()
    thread.join()
    assert done, "the other request failed"
    return done[0]


def set_status(database: Database, integration_id: str, status: str) -> None:
    database.transaction_blocking(
        lambda conn: conn.execute(
            integrations.update()
            .where(integrations.c.id == integration_id)
            .values(status=status, verified_at=utcnow())
        )
    )


@pytest.mark.parametrize(("start", "move"), [("inactive", "activate"), ("active", "disable")])
async def test_a_move_between_a_patchs_read_and_write_never_leaves_unverified_credentials_live(
    world: tuple[IntegrationService, Any, str],
    database: Database,
    settings: Settings,
    start: str,
    move: str,
) -> None:
    """The tenant's activate (or disable) lands, from another connection, exactly between a
    credential PATCH's read and its write (the key provider's wrap is the barrier), two
    hundred times. The move wins; the PATCH sees the row changed and starts again; the row
    ends pending verification with the new credentials, never active with unverified ones."""
    service, keys, tenant_id = world
    other = open_database(settings, migrate=False)  # another process's connections
    rival = IntegrationService(other, service.catalog, keys)
    try:
        for round_number in range(200):
            created = await service.create(tenant_id, BODY)
            set_status(database, created.id, start)
            moved: list[str] = []

            def barrier(integration_id: str = created.id, moved: list[str] = moved) -> None:
                if not moved:  # only between the first read and its write
                    done = elsewhere(getattr(rival, move), tenant_id, integration_id)
                    moved.append(done.status)

            keys.before_wrap = barrier
            updated = await service.update(
                tenant_id, created.id, {"credentials": {"api_key": f"key-{round_number:04d}"}}
            )
            assert moved == ["active" if move == "activate" else "inactive"]
            row = database.read_blocking(
                lambda conn, i=created.id: conn.execute(
                    sa.select(integrations).where(integrations.c.id == i)
                ).one()
            )
            assert updated.status == row.status == "pending_verify"
            assert row.credentials_version == 2 and row.verified_at is None
            await service.delete(tenant_id, created.id)
    finally:
        other.dispose()


async def test_a_move_after_the_patch_is_refused_with_a_reason(
    world: tuple[IntegrationService, Any, str], database: Database
) -> None:
    service, _, tenant_id = world
    created = await service.create(tenant_id, BODY)
    set_status(database, created.id, "inactive")
    await service.update(tenant_id, created.id, {"credentials": {"api_key": "key-new-0009"}})
    with pytest.raises(ConflictError, match="awaiting credential verification"):
        await service.activate(tenant_id, created.id)


async def test_a_patch_landing_inside_an_activate_makes_the_activate_a_409(
    world: tuple[IntegrationService, Any, str], database: Database
) -> None:
    """The other interleaving, on PostgreSQL: the PATCH's write commits after activate read
    the row and before its compare-and-set. Another connection's row lock is the barrier:
    activate reads (no lock), then its UPDATE waits on the lock while the PATCH's statement
    commits through that connection. A hundred rounds: activate always loses with a 409,
    and the row is never active with the new, unverified credentials."""
    if database.dialect != "postgresql":
        pytest.skip("SQLite runs one writer at a time: a write cannot land inside another")
    service, _, tenant_id = world
    for _ in range(100):
        created = await service.create(tenant_id, BODY)
        set_status(database, created.id, "inactive")
        with database.engine.connect() as locker:
            patch = locker.begin()
            locker.execute(
                sa.select(integrations.c.id)
                .where(integrations.c.id == created.id)
                .with_for_update()
            )
            outcome: list[Any] = []

            def activate(integration_id: str = created.id, outcome: list[Any] = outcome) -> None:
                try:
                    outcome.append(anyio.run(service.activate, tenant_id, integration_id))
                except ConflictError as exc:
                    outcome.append(exc)

            thread = threading.Thread(target=activate)
            thread.start()
            waiting_on_lock(database)  # activate has read and now waits to write
            assert integration_rows.change_status(
                locker,
                created.id,
                Action.CREDENTIALS_CHANGED,
                current="inactive",
                verification=None,
                now=utcnow(),
                also={"credentials_version": 2, "verified_at": None},
            )
            patch.commit()
            thread.join(timeout=30)
        [lost] = outcome
        assert isinstance(lost, ConflictError) and "changed meanwhile" in str(lost)
        assert version(database, created.id) == 2
        shown = await service.get(tenant_id, created.id)
        assert shown.status == "pending_verify" and shown.verified_at is None
        await service.delete(tenant_id, created.id)


def waiting_on_lock(database: Database, timeout: float = 10.0) -> None:
    """Return once some session of the database waits for a lock (PostgreSQL)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = database.read_blocking(
            lambda conn: conn.exec_driver_sql(
                "SELECT count(*) FROM pg_locks WHERE NOT granted"
            ).scalar_one()
        )
        if waiting:
            return
        time.sleep(0.005)
    raise AssertionError("nothing came to wait on the lock")
