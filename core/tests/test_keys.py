"""Key rotation, rewrap, status, retirement, and key providers supplied by plugins."""

from __future__ import annotations

import functools
import os
import secrets
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from relaykit import hookimpl
from relaykit import tenants as tenant_store
from relaykit.cli import CliState, build_cli
from relaykit.errors import ConfigurationError
from relaykit.integrations import IntegrationService
from relaykit.keys import KeyProviderSpec, LocalKeyring, key_usage, load_key_provider, rewrap_all
from relaykit.plugins import make_plugin_manager
from relaykit.sealing import (
    SealContext,
    SealError,
    open_credentials,
    read_blob,
    seal_credentials,
)
from relaykit.settings import Settings
from relaykit.storage.database import Database, json_value

from .providers_for_tests import OneProvider, make_provider

CONTEXT = SealContext("t1", "i1", "acme")


class ToyKms:
    """A stand-in for a cloud KMS: one AES key it never shows, ids it names itself."""

    name = "toykms"

    def __init__(self, settings: Settings) -> None:
        self.primary_key_id = "toy-1"
        self._key = AESGCM(AESGCM.generate_key(bit_length=256))
        self.calls = 0

    def wrap(self, data_key: bytes, associated_data: bytes) -> tuple[str, bytes]:
        self.calls += 1
        nonce = os.urandom(12)
        return self.primary_key_id, nonce + self._key.encrypt(nonce, data_key, associated_data)

    def unwrap(self, key_id: str, wrapped: bytes, associated_data: bytes) -> bytes:
        self.calls += 1
        if key_id != self.primary_key_id:
            raise SealError(f"toykms has no key {key_id}")
        return self._key.decrypt(wrapped[:12], wrapped[12:], associated_data)


class ToyKmsPlugin:
    @hookimpl
    def relaykit_key_providers(self) -> Any:
        yield KeyProviderSpec("toykms", ToyKms)


def seed(
    database: Database, settings: Settings, keyring: Any, count: int = 5
) -> list[tuple[str, str, str]]:
    catalog = make_plugin_manager(
        load_entrypoints=False, plugins=[("acme", OneProvider(make_provider()))]
    ).catalog()
    service = IntegrationService(database, catalog, keyring)
    made = []
    for number in range(count):
        tenant_id = database.transaction_blocking(tenant_store.create_tenant, f"t{number}").id
        secret = f"key-{number}-{secrets.token_hex(4)}"
        body = {
            "provider": "acme",
            "credentials": {"api_key": secret, "account": "a"},
            "enabled_capabilities": [],
        }
        view = anyio.run(service.create, tenant_id, body)
        made.append((tenant_id, view.id, secret))
    return made


def opens(database: Database, keyring: Any, made: list[tuple[str, str, str]]) -> bool:
    from relaykit.storage.models import integrations

    for tenant_id, integration_id, secret in made:
        blob = database.read_blocking(
            lambda conn, i=integration_id: (
                conn.execute(integrations.select().where(integrations.c.id == i))
                .one()
                .sealed_credentials
            )
        )
        if open_credentials(blob, SealContext(tenant_id, integration_id, "acme"), keyring) != {
            "api_key": secret
        }:
            return False
    return True


def test_rotate_keeps_old_blobs_open_and_wraps_new_ones_with_the_new_key(tmp_path: Path) -> None:
    keyring = LocalKeyring.in_home(tmp_path)
    old_key = keyring.primary_key_id
    old_blob = seal_credentials({"k": "v-old-value"}, CONTEXT, keyring)
    new_key = keyring.rotate()
    assert new_key != old_key and keyring.primary_key_id == new_key
    assert keyring.key_ids == (old_key, new_key)
    assert open_credentials(old_blob, CONTEXT, keyring) == {"k": "v-old-value"}
    assert read_blob(seal_credentials({"k": "v"}, CONTEXT, keyring)).key_id == new_key
    assert (tmp_path / "keyring.json").stat().st_mode & 0o777 == 0o600


def test_another_process_sees_a_rotation_without_restarting(tmp_path: Path) -> None:
    serving = LocalKeyring.in_home(tmp_path)  # a long-running server's keyring
    operator = LocalKeyring.in_home(tmp_path)  # `relaykit keys rotate` in another process
    new_key = operator.rotate()
    assert read_blob(seal_credentials({"k": "v"}, CONTEXT, serving)).key_id == new_key
    blob = seal_credentials({"k": "v2"}, CONTEXT, operator)
    assert open_credentials(blob, CONTEXT, serving) == {"k": "v2"}


def test_rewrap_moves_every_row_and_is_idempotent(database: Database, settings: Settings) -> None:
    keyring = LocalKeyring.in_home(settings.home)
    made = seed(database, settings, keyring, count=7)
    old_key = keyring.primary_key_id
    new_key = keyring.rotate()
    assert anyio.run(key_usage, database) == {("local", old_key): 7}
    seen: list[int] = []
    progress = anyio.run(
        functools.partial(rewrap_all, database, keyring, batch_size=3, on_batch=seen.append)
    )
    assert progress.rewrapped == 7 and progress.failed == 0
    assert sum(seen) >= 7
    assert anyio.run(key_usage, database) == {("local", new_key): 7}
    assert opens(database, keyring, made)
    again = anyio.run(rewrap_all, database, keyring)
    assert again.rewrapped == 0  # resumable: only rows still on an old key are touched


def test_retire_only_an_unused_non_primary_key(tmp_path: Path) -> None:
    keyring = LocalKeyring.in_home(tmp_path)
    first = keyring.primary_key_id
    with pytest.raises(SealError, match="is the primary key"):
        keyring.retire(first)
    keyring.rotate()
    keyring.retire(first)
    assert first not in keyring.key_ids
    with pytest.raises(SealError, match="not in the keyring"):
        keyring.retire(first)


def test_keys_commands(database: Database, settings: Settings) -> None:
    keyring = LocalKeyring.in_home(settings.home)
    seed(database, settings, keyring, count=3)
    old_key = keyring.primary_key_id
    pm = make_plugin_manager(load_entrypoints=False)

    def run(*args: str) -> Any:
        return CliRunner().invoke(build_cli(pm), list(args), obj=CliState(settings, pm))

    status = run("keys", "status")
    assert f"* local {old_key}" in status.output and "rows 3" in status.output
    rotated = run("keys", "rotate")
    assert rotated.exit_code == 0 and "new primary key" in rotated.output
    refused = run("keys", "retire", old_key)
    assert refused.exit_code == 1 and "still wraps 3 rows" in refused.output
    rewrapped = run("keys", "rewrap", "--batch-size", "2")
    assert (
        rewrapped.exit_code == 0
        and "rewrapped 3, skipped 0 (changed meanwhile), failed 0" in rewrapped.output
    )
    after = run("keys", "status")
    assert f"  local {old_key}" in after.output and "rows 0" in after.output
    retired = run("keys", "retire", old_key)
    assert retired.exit_code == 0
    assert old_key not in run("keys", "status").output
    # each keyring change is in the system chain of the audit trail, by the cli
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
    assert json_value(events[-1][2]) == {"key_provider": "local"}


def test_a_key_provider_plugin_wraps_and_old_local_blobs_still_open(
    database: Database, settings: Settings
) -> None:
    local = LocalKeyring.in_home(settings.home)
    made = seed(database, settings, local, count=4)
    pm = make_plugin_manager(load_entrypoints=False, plugins=[("toykms", ToyKmsPlugin())])
    switched = Settings.from_env(
        {
            "RELAYKIT_HOME": str(settings.home),
            "RELAYKIT_DATABASE_URL": settings.database_url,
            "RELAYKIT_KEY_PROVIDER": "toykms",
        }
    )
    keys = load_key_provider(switched, pm)
    assert keys.name == "toykms" and keys.primary_key_id == "toy-1"
    assert opens(database, keys, made)  # local blobs open through the set
    fresh = seal_credentials({"k": "v"}, CONTEXT, keys)
    assert read_blob(fresh).key_provider == "toykms"
    progress = anyio.run(rewrap_all, database, keys)
    assert progress.rewrapped == 4
    assert anyio.run(key_usage, database) == {("toykms", "toy-1"): 4}
    assert opens(database, keys, made)
    assert keys.primary.calls > 0  # type: ignore[attr-defined]


def test_an_unknown_key_provider_is_a_clear_start_error(settings: Settings) -> None:
    wrong = Settings.from_env(
        {"RELAYKIT_HOME": str(settings.home), "RELAYKIT_KEY_PROVIDER": "vault"}
    )
    with pytest.raises(ConfigurationError, match="installed key providers are: local"):
        load_key_provider(wrong, make_plugin_manager(load_entrypoints=False))
