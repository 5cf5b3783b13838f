"""Key rotation (recorded in the database), rewrap, status, retirement, and key providers
supplied by plugins."""

from __future__ import annotations

import functools
import os
import secrets
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from relaykit import hookimpl
from relaykit import tenants as tenant_store
from relaykit.cli import CliState, build_cli
from relaykit.errors import ConfigurationError
from relaykit.integrations import IntegrationService
from relaykit.keys import (
    KeyProviderSpec,
    KeySet,
    LocalKeyring,
    custody,
    key_usage,
    load_key_provider,
    local_key_set,
    rewrap_all,
)
from relaykit.keys import loading as key_loading
from relaykit.plugins import make_plugin_manager
from relaykit.sealing import (
    CredentialsUnreadable,
    KeyUnavailable,
    SealContext,
    SealError,
    open_credentials,
    read_blob,
    seal,
    seal_credentials,
    unseal,
)
from relaykit.settings import Settings
from relaykit.storage.database import Database, IntegrityError, json_value, open_database
from relaykit.storage.models import encryption_keys, integrations

from .providers_for_tests import OneProvider, make_provider

CONTEXT = SealContext("t1", "i1", "acme")


class ToyKms:
    """A stand-in for a cloud KMS: AES keys it never shows, under ids it names itself."""

    name = "toykms"
    default_key_id = "toy-1"

    def __init__(self, settings: Settings) -> None:
        self._keys = {
            key_id: AESGCM(AESGCM.generate_key(bit_length=256)) for key_id in ("toy-1", "toy-2")
        }
        self.calls = 0
        self.threads: list[int] = []  # the thread of each unwrap

    def _key(self, key_id: str) -> AESGCM:
        if key_id not in self._keys:
            raise KeyUnavailable(f"toykms has no key {key_id}")
        return self._keys[key_id]

    def wrap(self, key_id: str, data_key: bytes, associated_data: bytes) -> bytes:
        self.calls += 1
        nonce = os.urandom(12)
        return nonce + self._key(key_id).encrypt(nonce, data_key, associated_data)

    def unwrap(self, key_id: str, wrapped: bytes, associated_data: bytes) -> bytes:
        self.calls += 1
        self.threads.append(threading.get_ident())
        try:
            return self._key(key_id).decrypt(wrapped[:12], wrapped[12:], associated_data)
        except InvalidTag:
            raise CredentialsUnreadable("toykms: the wrapped key failed authentication") from None


class ToyKmsPlugin:
    @hookimpl
    def relaykit_key_providers(self) -> Any:
        yield KeyProviderSpec("toykms", ToyKms)


def catalog() -> Any:
    return make_plugin_manager(
        load_entrypoints=False, plugins=[("acme", OneProvider(make_provider()))]
    ).catalog()


def seed(database: Database, keys: KeySet, count: int = 5) -> list[tuple[str, str, str]]:
    service = IntegrationService(database, catalog(), keys)
    made = []
    for number in range(count):
        tenant_id = database.transaction_blocking(
            tenant_store.create_tenant, f"t{number}-{secrets.token_hex(2)}"
        ).id
        secret = f"key-{number}-{secrets.token_hex(4)}"
        body = {
            "provider": "acme",
            "credentials": {"api_key": secret, "account": "a"},
            "enabled_capabilities": [],
        }
        view = anyio.run(service.create, tenant_id, body)
        made.append((tenant_id, view.id, secret))
    return made


def blob_of(database: Database, integration_id: str) -> bytes | None:
    return database.read_blocking(
        lambda conn: conn.execute(
            sa.select(integrations.c.sealed_credentials).where(integrations.c.id == integration_id)
        ).scalar_one()
    )


def opens(database: Database, keys: Any, made: list[tuple[str, str, str]]) -> bool:
    for tenant_id, integration_id, secret in made:
        blob = blob_of(database, integration_id)
        assert blob is not None
        if open_credentials(blob, SealContext(tenant_id, integration_id, "acme"), keys) != {
            "api_key": secret
        }:
            return False
    return True


def test_rotate_keeps_old_blobs_open_and_wraps_new_ones_with_the_new_key(
    database: Database, settings: Settings
) -> None:
    keys = local_key_set(settings, database)
    assert keys.local is not None
    old_key = keys.primary_key_id
    old_blob = seal_credentials({"k": "v-old-value"}, CONTEXT, keys)
    new_key = custody.rotate(keys, "local")
    assert new_key != old_key and keys.primary_key_id == new_key
    assert keys.local.key_ids == (old_key, new_key)
    assert open_credentials(old_blob, CONTEXT, keys) == {"k": "v-old-value"}
    assert read_blob(seal_credentials({"k": "v"}, CONTEXT, keys)).key_id == new_key
    # the database, not the file, says which key is primary
    assert database.read_blocking(custody.recorded) == {
        ("local", old_key): custody.ACTIVE,
        ("local", new_key): custody.PRIMARY,
    }
    assert settings.keyring.stat().st_mode & 0o777 == 0o600


def test_rotate_refuses_a_key_this_node_cannot_use(database: Database, settings: Settings) -> None:
    keys = local_key_set(settings, database)
    before = database.read_blocking(custody.recorded)
    with pytest.raises(KeyUnavailable, match="cannot use key 01nosuchkey"):
        custody.rotate(keys, "local", "01nosuchkey")
    assert database.read_blocking(custody.recorded) == before


def test_a_second_primary_is_refused_by_the_database(
    database: Database, settings: Settings
) -> None:
    """Two nodes rotating at the same moment cannot both record a primary: the table
    allows one."""
    keys = local_key_set(settings, database)
    with pytest.raises(IntegrityError):
        database.transaction_blocking(
            lambda conn: conn.execute(
                encryption_keys.insert().values(
                    key_provider="local",
                    key_id="01otherprimary",
                    state=custody.PRIMARY,
                    created_at=sa.func.current_timestamp(),
                    updated_at=sa.func.current_timestamp(),
                )
            )
        )
    assert database.read_blocking(custody.primary) == ("local", keys.primary_key_id)


ROTATE = [sys.executable, "-m", "relaykit", "keys", "rotate"]


def test_another_process_sees_a_rotation_without_restarting(
    database: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``relaykit keys rotate`` in another process records the new primary in the database;
    a long-running service seals under it at its next seal, and opens what that process
    sealed (its keyring file gained the key)."""
    monkeypatch.setattr(key_loading, "PRIMARY_REFRESH_SECONDS", 0.0)  # every seal reads it
    serving = local_key_set(settings, database)
    service = IntegrationService(database, catalog(), serving)
    [(tenant_id, first_id, _)] = seed(database, serving, count=1)
    old_key = serving.primary_key_id
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYKIT_")}
    env |= {"RELAYKIT_HOME": str(settings.home), "RELAYKIT_DATABASE_URL": settings.database_url}
    rotated = subprocess.run(ROTATE, env=env, capture_output=True, text=True, timeout=120)
    assert rotated.returncode == 0, rotated.stderr
    new_key = rotated.stdout.split("new primary key local ")[1].split(";")[0]
    assert new_key != old_key
    made = seed(database, serving, count=1)
    assert read_blob(blob_of(database, made[0][1]) or b"").key_id == new_key
    assert serving.primary_key_id == new_key
    # what the other process seals, this one opens
    elsewhere = open_database(settings)
    try:
        operator = local_key_set(settings, elsewhere)
        assert operator.primary_key_id == new_key
        blob = seal_credentials({"k": "v2"}, CONTEXT, operator)
    finally:
        elsewhere.dispose()
    assert open_credentials(blob, CONTEXT, serving) == {"k": "v2"}
    assert anyio.run(service.get, tenant_id, first_id).status == "pending_verify"


def test_a_node_reads_the_primary_again_only_after_the_refresh_interval(
    database: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    serving = local_key_set(settings, database)
    reads: list[int] = []
    real = custody.primary

    def counted(conn: sa.Connection) -> Any:
        reads.append(1)
        return real(conn)

    monkeypatch.setattr(custody, "primary", counted)
    monkeypatch.setattr(key_loading, "PRIMARY_REFRESH_SECONDS", 3600.0)
    anyio.run(serving.refresh)
    assert reads == []  # just attached: its copy is fresh
    monkeypatch.setattr(key_loading, "PRIMARY_REFRESH_SECONDS", 0.0)
    anyio.run(serving.refresh)
    assert reads == [1]


def test_rewrap_moves_every_row_and_is_idempotent(database: Database, settings: Settings) -> None:
    keys = local_key_set(settings, database)
    made = seed(database, keys, count=7)
    old_key = keys.primary_key_id
    new_key = custody.rotate(keys, "local")
    assert anyio.run(key_usage, database) == {("local", old_key): 7}
    seen: list[int] = []
    progress = anyio.run(
        functools.partial(rewrap_all, database, keys, batch_size=3, on_batch=seen.append)
    )
    assert progress.rewrapped == 7 and progress.failed == 0
    assert sum(seen) >= 7
    assert anyio.run(key_usage, database) == {("local", new_key): 7}
    assert opens(database, keys, made)
    again = anyio.run(rewrap_all, database, keys)
    assert again.rewrapped == 0  # resumable: only rows still on an old key are touched


def cli(settings: Settings, pm: Any = None) -> Any:
    pm = pm or make_plugin_manager(load_entrypoints=False)

    def run(*args: str) -> Any:
        return CliRunner().invoke(build_cli(pm), list(args), obj=CliState(settings, pm))

    return run


def test_retire_only_an_unused_non_primary_key(database: Database, settings: Settings) -> None:
    keys = local_key_set(settings, database)
    seed(database, keys, count=2)
    first = keys.primary_key_id
    run = cli(settings)
    refused = run("keys", "retire", first)
    assert refused.exit_code == 1 and "is the primary key: rotate first" in refused.output
    assert run("keys", "rotate").exit_code == 0
    in_use = run("keys", "retire", first)
    assert in_use.exit_code == 1 and "still wraps 2 rows" in in_use.output
    assert run("keys", "rewrap").exit_code == 0
    retired = run("keys", "retire", first)
    assert retired.exit_code == 0, retired.output
    assert keys.local is not None and first not in keys.local.key_ids  # gone from the file
    assert database.read_blocking(custody.recorded)[("local", first)] == custody.RETIRED
    again = run("keys", "retire", first)
    assert again.exit_code == 1 and "already retired" in again.output
    unknown = run("keys", "retire", "01neverused")
    assert unknown.exit_code == 1 and "not one relaykit has used" in unknown.output


def test_the_keyring_refuses_to_lose_its_last_key(tmp_path: Path) -> None:
    keyring = LocalKeyring.create(tmp_path / "keyring.json")
    only = keyring.default_key_id
    with pytest.raises(SealError, match="the keyring's only key"):
        keyring.remove_key(only)
    second = keyring.create_key()
    keyring.remove_key(only)
    assert keyring.key_ids == (second,)
    with pytest.raises(SealError, match="not in the keyring"):
        keyring.remove_key(only)


def test_keys_commands(database: Database, settings: Settings) -> None:
    keys = local_key_set(settings, database)
    seed(database, keys, count=3)
    old_key = keys.primary_key_id
    run = cli(settings)

    status = run("keys", "status")
    assert f"* local {old_key}  primary  rows 3  in keyring" in status.output
    rotated = run("keys", "rotate")
    assert rotated.exit_code == 0 and "new primary key local" in rotated.output
    new_key = rotated.output.split("new primary key local ")[1].split(";")[0]
    refused = run("keys", "retire", old_key)
    assert refused.exit_code == 1 and "still wraps 3 rows" in refused.output
    rewrapped = run("keys", "rewrap", "--batch-size", "2")
    assert (
        rewrapped.exit_code == 0
        and "rewrapped 3, skipped 0 (changed meanwhile), failed 0" in rewrapped.output
    )
    after = run("keys", "status").output
    assert f"* local {new_key}  primary  rows 3  in keyring" in after
    assert f"  local {old_key}  active  rows 0  in keyring" in after
    retired = run("keys", "retire", old_key)
    assert retired.exit_code == 0
    assert f"  local {old_key}  retired  rows 0  NOT in keyring" in run("keys", "status").output
    # each key change is in the system chain of the audit trail, by the cli
    events = database.read_blocking(
        lambda conn: [
            (row.action, row.actor, row.details)
            for row in conn.execute(
                sa.text(
                    "SELECT action, actor, details FROM audit_events "
                    "WHERE chain = 'system' ORDER BY seq"
                )
            )
        ]
    )
    assert [(action, actor) for action, actor, _ in events] == [
        ("keys.rotated", "cli"),
        ("keys.rewrapped", "cli"),
        ("keys.rewrapped", "cli"),
        ("keys.retired", "cli"),
    ]
    assert json_value(events[0][2]) == {
        "key_provider": "local",
        "primary_key_id": new_key,
        "previous_key_provider": "local",
        "previous_key_id": old_key,
    }
    assert json_value(events[-1][2]) == {"key_provider": "local", "key_id": old_key}


def test_keys_add_then_rotate_to_it(database: Database, settings: Settings) -> None:
    """The copy-the-keyring sequence (docs/deployment.md): a key added to the keyring is not
    used until ``rotate --key-id`` makes it primary."""
    keys = local_key_set(settings, database)
    old_key = keys.primary_key_id
    run = cli(settings)
    added = run("keys", "add")
    assert added.exit_code == 0, added.output
    new_key = added.output.strip().splitlines()[-1]
    assert keys.local is not None and keys.local.holds(new_key)
    assert database.read_blocking(custody.primary) == ("local", old_key)  # not yet used
    assert f"  local {new_key}  unused  rows 0  in keyring" in run("keys", "status").output
    rotated = run("keys", "rotate", "--key-id", new_key)
    assert rotated.exit_code == 0, rotated.output
    assert database.read_blocking(custody.primary) == ("local", new_key)


def test_a_key_provider_plugin_wraps_and_old_local_blobs_still_open(
    database: Database, settings: Settings
) -> None:
    local = local_key_set(settings, database)
    made = seed(database, local, count=4)
    pm = make_plugin_manager(load_entrypoints=False, plugins=[("toykms", ToyKmsPlugin())])
    switched = msgspec.structs.replace(settings, key_provider="toykms")
    keys = load_key_provider(switched, pm)
    custody.attach(keys, database, switched)
    # the database's primary stays the local key until the operator rotates
    assert keys.name == "local"
    with pytest.raises(ConfigurationError, match="does not make keys"):
        custody.rotate(keys, "toykms")
    custody.rotate(keys, "toykms", "toy-1")
    assert keys.name == "toykms" and keys.primary_key_id == "toy-1"
    assert opens(database, keys, made)  # local blobs open through the set
    fresh = seal_credentials({"k": "v"}, CONTEXT, keys)
    assert read_blob(fresh).key_provider == "toykms"
    progress = anyio.run(rewrap_all, database, keys)
    assert progress.rewrapped == 4
    assert anyio.run(key_usage, database) == {("toykms", "toy-1"): 4}
    assert opens(database, keys, made)
    toy = keys.provider_named("toykms")
    assert isinstance(toy, ToyKms) and toy.calls > 0
    # and onto the KMS's next key, with the same online rewrap
    custody.rotate(keys, "toykms", "toy-2")
    assert anyio.run(rewrap_all, database, keys).rewrapped == 4
    assert anyio.run(key_usage, database) == {("toykms", "toy-2"): 4}
    assert opens(database, keys, made)
    # the move's last step (docs/deployment.md): retire the local key, the keyring's only
    # one; the command succeeds and leaves the file to the operator
    local_key = local.local.default_key_id if local.local is not None else ""
    retired = CliRunner().invoke(
        build_cli(pm), ["keys", "retire", local_key], obj=CliState(switched, pm)
    )
    assert retired.exit_code == 0, retired.output
    assert f"retired key local {local_key}" in retired.output
    assert "holds no other key" in retired.stderr
    assert database.read_blocking(custody.recorded)[("local", local_key)] == custody.RETIRED
    assert opens(database, keys, made)


def test_an_unknown_key_provider_is_a_clear_start_error(settings: Settings) -> None:
    wrong = Settings.from_env(
        {"RELAYKIT_HOME": str(settings.home), "RELAYKIT_KEY_PROVIDER": "vault"}
    )
    with pytest.raises(ConfigurationError, match="installed key providers are: local"):
        load_key_provider(wrong, make_plugin_manager(load_entrypoints=False))


def test_keys_status_and_rewrap_get_past_an_altered_row(
    database: Database, settings: Settings
) -> None:
    """One row whose blob cannot even be decoded (altered in the database) is listed as such
    and counted as failed by rewrap, which moves every other row."""
    keys = local_key_set(settings, database)
    made = seed(database, keys, count=3)
    broken_id = made[0][1]
    database.transaction_blocking(
        lambda conn: conn.execute(
            integrations.update()
            .where(integrations.c.id == broken_id)
            .values(sealed_credentials=b"\xc1 not a blob")
        )
    )
    run = cli(settings)
    status = run("keys", "status")
    assert status.exit_code == 0, status.output
    assert "? corrupt sealed credentials (cannot be decoded)  rows 1" in status.output
    assert f"* local {keys.primary_key_id}  primary  rows 2  in keyring" in status.output
    assert run("keys", "rotate").exit_code == 0
    rewrapped = run("keys", "rewrap")
    assert rewrapped.exit_code == 1
    assert "rewrapped 2, skipped 0 (changed meanwhile), failed 1" in rewrapped.output
    assert opens(database, local_key_set(settings, database), made[1:])


def test_each_seal_and_open_runs_where_its_own_provider_says(
    database: Database, settings: Settings
) -> None:
    """An installed remote provider (toykms says nothing of in_process: a network one)
    moves its own blobs' opening to a worker thread and leaves the local keyring's on the
    event loop; a worker's batch of any keys goes to a thread."""
    local = local_key_set(settings, database)
    made = seed(database, local, count=1)
    pm = make_plugin_manager(load_entrypoints=False, plugins=[("toykms", ToyKmsPlugin())])
    keys = load_key_provider(settings, pm)
    custody.attach(keys, database, settings)
    assert keys.in_process_for("local") and not keys.in_process_for("toykms")
    assert keys.in_process is False  # a batch may hold blobs of either
    tenant_id, integration_id, secret = made[0]
    local_blob = blob_of(database, integration_id)
    assert local_blob is not None
    context = SealContext(tenant_id, integration_id, "acme")
    loop_thread: list[int] = []
    local_threads: list[int] = []
    keyring = keys.local
    assert keyring is not None
    local_unwrap = keyring.unwrap

    def recording_unwrap(key_id: str, wrapped: bytes, associated_data: bytes) -> bytes:
        local_threads.append(threading.get_ident())
        return local_unwrap(key_id, wrapped, associated_data)

    keyring.unwrap = recording_unwrap  # type: ignore[method-assign]

    async def open_both() -> tuple[dict[str, Any], dict[str, Any]]:
        loop_thread.append(threading.get_ident())
        opened_local = await unseal(local_blob, context, keys)
        custody.rotate(keys, "toykms", "toy-1")  # probes the key here, in this thread
        toy.threads.clear()
        toy_blob = await seal({"api_key": secret}, context, keys)
        return opened_local, await unseal(toy_blob, context, keys)

    toy = keys.provider_named("toykms")
    assert isinstance(toy, ToyKms)
    opened_local, opened_toy = anyio.run(open_both)
    assert opened_local == opened_toy == {"api_key": secret}
    assert toy.threads
    assert loop_thread[0] not in toy.threads  # the toy's unwrap ran in a worker thread
    assert local_threads == loop_thread  # the keyring's, on the event loop
