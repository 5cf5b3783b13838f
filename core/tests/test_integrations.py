"""The integration service's PATCH of credentials when another write gets in between its
read and its write: it seals outside any transaction, so it must notice and start again."""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import msgspec
import pytest
import sqlalchemy as sa

from relaykit import CredentialField, tenants
from relaykit.errors import ConflictError
from relaykit.ids import utcnow
from relaykit.integrations import UPDATE_TRIES, IntegrationService
from relaykit.keys import KeySet, local_key_set
from relaykit.lifecycle import Action
from relaykit.plugins import make_plugin_manager
from relaykit.sealing import (
    CredentialsUnreadable,
    KeyUnavailable,
    SealContext,
    open_credentials,
    read_blob,
)
from relaykit.settings import Settings
from relaykit.storage import integrations as integration_rows
from relaykit.storage.database import Database, open_database
from relaykit.storage.models import audit_events, integrations

from .providers_for_tests import OneProvider, make_provider

pytestmark = pytest.mark.anyio
T = TypeVar("T")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class InterferingKeyring:
    """The key set (the local keyring), plus a hook that runs before each wrap: a key
    provider is where a PATCH waits outside any transaction, so that is where another write
    can get in."""

    def __init__(self, keys: KeySet) -> None:
        self.keys = keys
        self.before_wrap: Callable[[], None] = lambda: None
        self.wraps = 0
        self.unwraps = 0
        #: raised by every unwrap while set (the key provider down)
        self.unwrap_error: Exception | None = None

    @property
    def name(self) -> str:
        return self.keys.name

    @property
    def primary_key_id(self) -> str:
        return self.keys.primary_key_id

    @property
    def in_process(self) -> bool:
        return self.keys.in_process

    def in_process_for(self, key_provider: str) -> bool:
        return self.keys.in_process_for(key_provider)

    async def refresh(self) -> None:
        await self.keys.refresh()

    def wrap(self, data_key: bytes, associated_data: bytes) -> tuple[str, bytes]:
        self.wraps += 1
        self.before_wrap()
        return self.keys.wrap(data_key, associated_data)

    def unwrap(self, key_id: str, wrapped: bytes, associated_data: bytes) -> bytes:
        return self.unwrap_from(self.keys.name, key_id, wrapped, associated_data)

    def unwrap_from(
        self, key_provider: str, key_id: str, wrapped: bytes, associated_data: bytes
    ) -> bytes:
        self.unwraps += 1
        if self.unwrap_error is not None:
            raise self.unwrap_error
        return self.keys.unwrap_from(key_provider, key_id, wrapped, associated_data)


@pytest.fixture
def world(settings: Settings, database: Database) -> tuple[IntegrationService, Any, str]:
    catalog = make_plugin_manager(
        load_entrypoints=False, plugins=[("acme", OneProvider(make_provider()))]
    ).catalog()
    keys = InterferingKeyring(local_key_set(settings, database))
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


# -- stored credentials that cannot be opened ------------------------------------------------


def spoil(database: Database, integration_id: str) -> bytes:
    """Flip one byte of the integration's sealed fields' ciphertext (the blob still decodes,
    and now fails authentication); the spoiled blob."""
    row = database.read_blocking(
        lambda conn: conn.execute(
            sa.select(integrations.c.sealed_credentials).where(integrations.c.id == integration_id)
        ).one()
    )
    parsed = read_blob(row.sealed_credentials)
    flipped = parsed.ciphertext[:-1] + bytes([parsed.ciphertext[-1] ^ 0x80])
    blob = msgspec.msgpack.encode(msgspec.structs.replace(parsed, ciphertext=flipped))
    database.transaction_blocking(
        lambda conn: conn.execute(
            integrations.update()
            .where(integrations.c.id == integration_id)
            .values(sealed_credentials=blob, status="error")
        )
    )
    return blob


def stored(database: Database, integration_id: str) -> sa.Row[Any]:
    return database.read_blocking(
        lambda conn: conn.execute(
            sa.select(integrations).where(integrations.c.id == integration_id)
        ).one()
    )


def last_event(database: Database, integration_id: str) -> dict[str, Any]:
    return database.read_blocking(
        lambda conn: dict(
            conn.execute(
                sa.select(audit_events)
                .where(audit_events.c.integration_id == integration_id)
                .order_by(audit_events.c.seq.desc())
                .limit(1)
            )
            .mappings()
            .one()
        )
    )


async def test_a_patch_sending_every_sensitive_field_does_not_need_the_old_blob(
    world: tuple[IntegrationService, Any, str], database: Database
) -> None:
    """The blob fails authentication; a PATCH that sends every sensitive field (acme has
    one) replaces it all the same (the old blob is tried once, to compare, and its failure
    does not stop it), and queues a new verification."""
    service, keys, tenant_id = world
    created = await service.create(tenant_id, BODY)
    spoil(database, created.id)
    keys.unwraps = 0
    updated = await service.update(
        tenant_id, created.id, {"credentials": {"api_key": "key-replaced-0042"}}
    )
    assert keys.unwraps == 1
    assert updated.status == "pending_verify"
    row = stored(database, created.id)
    assert row.credentials_version == 2 and row.verify_attempts == 0
    opened = open_credentials(
        row.sealed_credentials, SealContext(tenant_id, created.id, "acme"), keys
    )
    assert opened == {"api_key": "key-replaced-0042"}
    event = last_event(database, created.id)
    assert event["action"] == "integration.credentials_replaced"
    assert event["details"]["credential_fields"] == ["api_key"]


async def test_sending_the_same_full_credentials_again_changes_nothing(
    world: tuple[IntegrationService, Any, str], database: Database
) -> None:
    """A client that PATCHes the whole credentials on every sync: values equal to the
    stored ones neither re-seal nor take an active integration out of routing."""
    service, _, tenant_id = world
    created = await service.create(tenant_id, BODY)
    database.transaction_blocking(
        lambda conn: conn.execute(
            sa.text("UPDATE integrations SET status = 'active' WHERE id = :id"),
            {"id": created.id},
        )
    )
    blob = stored(database, created.id).sealed_credentials
    updated = await service.update(tenant_id, created.id, {"credentials": BODY["credentials"]})
    assert updated.status == "active"
    row = stored(database, created.id)
    assert (row.credentials_version, row.sealed_credentials) == (1, blob)


async def test_a_patch_that_needs_an_unreadable_blob_is_refused_and_changes_nothing(
    world: tuple[IntegrationService, Any, str], database: Database
) -> None:
    service, _, tenant_id = world
    created = await service.create(tenant_id, BODY)
    blob = spoil(database, created.id)
    with pytest.raises(CredentialsUnreadable):
        await service.update(tenant_id, created.id, {"credentials": {"account": "a2"}})
    row = stored(database, created.id)
    assert (row.sealed_credentials, row.credentials_version, row.status) == (blob, 1, "error")
    assert row.public_credentials == {"account": "a1"}
    # a PATCH without credentials needs no blob at all
    edited = await service.update(tenant_id, created.id, {"metadata": {"env": "prod"}})
    assert edited.metadata == {"env": "prod"}


TWO_SECRETS = make_provider(
    "vault",
    credential_schema={
        "account": CredentialField(),
        "secret_key": CredentialField(sensitive=True),
        "webhook_secret": CredentialField(sensitive=True, required=False),
    },
)


@pytest.fixture
def vault(
    settings: Settings, database: Database
) -> tuple[IntegrationService, InterferingKeyring, str]:
    catalog = make_plugin_manager(
        load_entrypoints=False, plugins=[("vault", OneProvider(TWO_SECRETS))]
    ).catalog()
    keys = InterferingKeyring(local_key_set(settings, database))
    tenant_id = database.transaction_blocking(tenants.create_tenant, "vaulted").id
    return IntegrationService(database, catalog, keys), keys, tenant_id  # type: ignore[arg-type]


async def test_every_sensitive_field_includes_the_optional_ones(
    vault: tuple[IntegrationService, InterferingKeyring, str], database: Database
) -> None:
    """With an optional sensitive field in the schema, sending only the required one is not
    every one: the old blob is needed (a 409 when it cannot be opened). Sending both (the
    optional one as null clears it) is, and goes through though the old blob fails."""
    service, keys, tenant_id = vault
    created = await service.create(
        tenant_id,
        {
            "provider": "vault",
            "credentials": {"account": "a", "secret_key": "sk-1", "webhook_secret": "wh-1"},
            "enabled_capabilities": ["send_sms"],
        },
    )
    blob = spoil(database, created.id)
    with pytest.raises(CredentialsUnreadable):
        await service.update(tenant_id, created.id, {"credentials": {"secret_key": "sk-2"}})
    assert stored(database, created.id).sealed_credentials == blob
    keys.unwraps = 0
    await service.update(
        tenant_id,
        created.id,
        {"credentials": {"secret_key": "sk-2", "webhook_secret": None}},
    )
    assert keys.unwraps == 1
    row = stored(database, created.id)
    opened = open_credentials(
        row.sealed_credentials, SealContext(tenant_id, created.id, "vault"), keys
    )
    assert opened == {"secret_key": "sk-2"}
    event = last_event(database, created.id)
    assert event["details"]["credential_fields"] == ["secret_key", "webhook_secret"]


async def test_a_patch_needing_the_old_blob_while_the_key_provider_is_down_changes_nothing(
    vault: tuple[IntegrationService, InterferingKeyring, str], database: Database
) -> None:
    """KeyUnavailable (the operator's fault) propagates from a PATCH that needs the old
    blob (the API answers 503); nothing changes. One that replaces every sensitive field
    needs no unwrap, only a wrap, and goes through."""
    service, keys, tenant_id = vault
    created = await service.create(
        tenant_id,
        {
            "provider": "vault",
            "credentials": {"account": "a", "secret_key": "sk-1"},
            "enabled_capabilities": ["send_sms"],
        },
    )
    keys.unwrap_error = KeyUnavailable("key provider local failed to unwrap: ConnectionError")
    with pytest.raises(KeyUnavailable):
        await service.update(tenant_id, created.id, {"credentials": {"account": "b"}})
    assert stored(database, created.id).credentials_version == 1
    updated = await service.update(
        tenant_id,
        created.id,
        {"credentials": {"account": "b", "secret_key": "sk-9", "webhook_secret": "wh-9"}},
    )
    assert updated.status == "pending_verify" and updated.credentials["account"] == "b"


async def test_kept_views_never_outlive_the_row_they_show(
    world: tuple[IntegrationService, Any, str],
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Views of raw rows are kept by the row's values: a row changed by anyone (here
    another connection, behind the service's back) is shown as it is now, and the store
    stays within its bound."""
    import relaykit.integrations as module

    monkeypatch.setattr(module, "VIEW_MEMO_SIZE", 1)
    service, _keys, tenant_id = world
    created = await service.create(tenant_id, BODY)
    first = await service.get(tenant_id, created.id)
    assert await service.get(tenant_id, created.id) is first  # kept
    database.transaction_blocking(
        lambda conn: conn.execute(
            integrations.update()
            .where(integrations.c.id == created.id)
            .values(metadata={"team": "ops"})
        )
    )
    changed = await service.get(tenant_id, created.id)
    assert changed.metadata == {"team": "ops"} and first.metadata == {}
    listed = await service.list(tenant_id)
    assert [view.metadata for view in listed.items] == [{"team": "ops"}]
    assert len(service._views) <= 1
