"""Key custody at start-up and on delete: no keyring is made behind the operator's back, a
start that lacks the database's keys refuses with what to restore, ``relaykit keys init``,
and deleting an integration destroys its secret."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from relaykit import audit
from relaykit import tenants as tenant_store
from relaykit.cli import CliState, build_cli
from relaykit.errors import ConfigurationError
from relaykit.integrations import IntegrationService
from relaykit.keys import (
    KeySet,
    LocalKeyring,
    custody,
    key_usage,
    load_key_provider,
    local_key_set,
    sealed_row_count,
)
from relaykit.plugins import RelaykitPluginManager, make_plugin_manager
from relaykit.sealing import CredentialsUnreadable, SealContext, open_credentials
from relaykit.services import Services
from relaykit.settings import Settings
from relaykit.storage.database import Database, open_database
from relaykit.storage.models import audit_events, integrations

from .providers_for_tests import OneProvider, make_provider


def plugins() -> RelaykitPluginManager:
    return make_plugin_manager(
        load_entrypoints=False, plugins=[("acme", OneProvider(make_provider()))]
    )


def start(settings: Settings) -> Services:
    """What ``relaykit serve`` does at start-up (its lifespan), without serving."""
    return Services.open(settings, plugins())


def cli(settings: Settings, *args: str) -> Result:
    pm = plugins()
    return CliRunner().invoke(build_cli(pm), list(args), obj=CliState(settings, pm))


def refused_cleanly(result: Result) -> str:
    """A command that refused: exit status 1, its message, no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # click's own exit, not an error
    assert "Traceback" not in result.output
    return result.output


def seed(database: Database, keys: KeySet, count: int) -> list[tuple[str, str, str]]:
    service = IntegrationService(database, plugins().catalog(), keys)
    made = []
    for number in range(count):
        tenant_id = database.transaction_blocking(tenant_store.create_tenant, f"t{number}").id
        secret = f"secret-{number}-value"
        body = {
            "provider": "acme",
            "credentials": {"api_key": secret, "account": "a"},
            "enabled_capabilities": [],
        }
        made.append((tenant_id, anyio.run(service.create, tenant_id, body).id, secret))
    return made


def with_env(settings: Settings, **changes: Any) -> Settings:
    return msgspec.structs.replace(settings, **changes)


# -- no silent keyring -----------------------------------------------------------------------


def test_a_fresh_home_and_an_empty_database_make_the_keyring_at_relaykit_keyring(
    settings: Settings, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "keys" / "ring.json"
    services = start(with_env(settings, keyring=elsewhere))
    try:
        assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o600
        assert not (settings.home / "keyring.json").exists()
        key_id = LocalKeyring(elsewhere).default_key_id
        assert services.key_provider.primary_key_id == key_id
        database = services.key_provider.database
        assert database.read_blocking(custody.recorded) == {("local", key_id): custody.PRIMARY}
    finally:
        services.dispose()


def test_a_populated_database_without_its_keyring_refuses_to_start(
    database: Database, settings: Settings, tmp_path: Path
) -> None:
    keys = local_key_set(settings, database)
    key_id = keys.primary_key_id
    seed(database, keys, 2)
    saved = tmp_path / "saved-keyring.json"
    shutil.move(settings.keyring, saved)

    with pytest.raises(ConfigurationError) as refused:
        start(settings)
    message = str(refused.value)
    assert message.startswith(
        f"the database holds 2 integration(s) with sealed credentials and needs the local "
        f"key(s) {key_id}, but there is no keyring at {settings.keyring}. Restore the keyring "
        f"that holds them"
    )
    assert f"to {settings.keyring}, or point RELAYKIT_KEYRING at it" in message
    assert not settings.keyring.exists()  # not made anew behind the operator's back
    for command in (["keys", "status"], ["worker"], ["keys", "rewrap"], ["keys", "rotate"]):
        assert f"Error: {message}" in refused_cleanly(cli(settings, *command)), command
    assert not settings.keyring.exists()

    # another keyring in its place will not do either
    LocalKeyring.create(settings.keyring)
    with pytest.raises(ConfigurationError, match=f"the keyring at {settings.keyring} holds none"):
        start(settings)

    os.replace(saved, settings.keyring)  # restored: it starts
    start(settings).dispose()
    assert cli(settings, "keys", "status").exit_code == 0


def test_an_empty_database_whose_primary_another_node_recorded_refuses(
    settings: Settings, tmp_path: Path
) -> None:
    """Node A started first on the new database and made its keyring; node B, with a home
    of its own and no keyring, does not make one of its own (it would seal under a key A
    cannot unwrap): it refuses, saying to copy A's keyring."""
    node_a = start(with_env(settings, home=tmp_path / "a", keyring=tmp_path / "a" / "kr.json"))
    key_id = node_a.key_provider.primary_key_id
    node_a.dispose()
    b_keyring = tmp_path / "b" / "kr.json"
    node_b = with_env(settings, home=tmp_path / "b", keyring=b_keyring)
    with pytest.raises(ConfigurationError) as refused:
        start(node_b)
    assert str(refused.value).startswith(
        f"the database records the local key(s) {key_id} as primary (another node made or "
        f"rotated it), but there is no keyring at {b_keyring}. Restore the keyring"
    )
    assert not b_keyring.exists()
    refused_cleanly(cli(node_b, "keys", "status"))
    # sharing A's file (docs/deployment.md, option A), B starts and seals under A's key
    shared = start(with_env(node_b, keyring=tmp_path / "a" / "kr.json"))
    try:
        assert shared.key_provider.primary_key_id == key_id
    finally:
        shared.dispose()


def test_a_node_that_loses_the_race_for_a_new_database_removes_its_keyring(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two nodes starting together on a new database both see it empty and both make a
    keyring; the database keeps one primary, and the other node removes the file it made
    (nothing was sealed under it) and refuses like any node lacking the primary's keyring."""
    node_a = start(with_env(settings, home=tmp_path / "a", keyring=tmp_path / "a" / "kr.json"))
    winner = node_a.key_provider.primary_key_id
    node_a.dispose()
    real = custody._read_state
    calls: list[int] = []

    def first_read_is_before_a_recorded(conn: sa.Connection) -> Any:
        calls.append(1)
        state = real(conn)
        return custody._State({}, 0) if len(calls) == 1 else state

    monkeypatch.setattr(custody, "_read_state", first_read_is_before_a_recorded)
    b_keyring = tmp_path / "b" / "kr.json"
    with pytest.raises(ConfigurationError, match=f"the local key.s. {winner} as primary"):
        start(with_env(settings, home=tmp_path / "b", keyring=b_keyring))
    assert not b_keyring.exists()


def test_nodes_sharing_one_keyring_file_starting_together_use_the_one_made_first(
    settings: Settings, tmp_path: Path
) -> None:
    """Node B looked for the shared keyring before node A made it and recorded its key; B
    finds A's file at its start-up check, and uses it."""
    shared = tmp_path / "shared" / "kr.json"
    node_b = with_env(settings, home=tmp_path / "b", keyring=shared)
    keys_b = load_key_provider(node_b, plugins())
    assert keys_b.local is None  # no file yet
    node_a = start(with_env(settings, home=tmp_path / "a", keyring=shared))
    winner = node_a.key_provider.primary_key_id
    database = node_a.key_provider.database
    custody.attach(keys_b, database, node_b)
    assert keys_b.primary_key_id == winner
    assert LocalKeyring(shared).default_key_id == winner
    node_a.dispose()


def test_a_node_that_finds_the_shared_keyring_made_as_it_makes_its_own_uses_it(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both nodes saw an empty database and no file; node A made the file first. Node B's
    attempt finds it there (it never overwrites a keyring), uses it, and leaves it."""
    shared = tmp_path / "shared" / "kr.json"
    node_b = with_env(settings, home=tmp_path / "b", keyring=shared)
    keys_b = load_key_provider(node_b, plugins())
    monkeypatch.setattr(keys_b, "find_local_keyring", lambda: None)  # looked before A made it
    LocalKeyring.create(shared)  # node A's, made before it recorded anything
    made_by_a = LocalKeyring(shared).default_key_id
    database = open_database(node_b)
    try:
        custody.attach(keys_b, database, node_b)
        assert keys_b.primary_key_id == made_by_a
        assert LocalKeyring(shared).default_key_id == made_by_a  # left in place
    finally:
        database.dispose()


def test_a_keyring_others_may_read_refuses_to_start_with_the_chmod_to_run(
    database: Database, settings: Settings
) -> None:
    local_key_set(settings, database)
    os.chmod(settings.keyring, 0o644)
    with pytest.raises(ConfigurationError) as refused:
        start(settings)
    assert str(refused.value) == (
        f"the keyring {settings.keyring} has mode 0644: others may read it. "
        f"Run: chmod 600 {settings.keyring}"
    )
    assert f"Error: {refused.value}" in refused_cleanly(cli(settings, "keys", "status"))
    os.chmod(settings.keyring, 0o600)
    start(settings).dispose()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give the file to another user")
def test_a_keyring_owned_by_another_user_refuses_to_start(
    database: Database, settings: Settings
) -> None:
    local_key_set(settings, database)
    os.chown(settings.keyring, 4242, -1)
    with pytest.raises(ConfigurationError, match=r"belongs to uid 4242, not to the user"):
        start(settings)
    refused_cleanly(cli(settings, "worker"))


# -- relaykit keys init ----------------------------------------------------------------------


def test_keys_init_makes_a_keyring_on_an_empty_database_only(
    database: Database, settings: Settings
) -> None:
    made = cli(settings, "keys", "init")
    assert made.exit_code == 0, made.output
    key_id = LocalKeyring(settings.keyring).default_key_id
    assert f"created the keyring {settings.keyring}; primary key local {key_id}" in made.output
    assert database.read_blocking(custody.primary) == ("local", key_id)
    assert stat.S_IMODE(settings.keyring.stat().st_mode) == 0o600
    again = refused_cleanly(cli(settings, "keys", "init"))
    assert f"a keyring already exists at {settings.keyring}" in again
    assert LocalKeyring(settings.keyring).default_key_id == key_id  # never overwritten


def test_keys_init_refuses_a_database_with_sealed_rows_and_force_gives_them_up(
    database: Database, settings: Settings, tmp_path: Path
) -> None:
    keys = local_key_set(settings, database)
    lost_key = keys.primary_key_id
    made = seed(database, keys, 2)
    shutil.move(settings.keyring, tmp_path / "elsewhere.json")

    refused = refused_cleanly(cli(settings, "keys", "init"))
    assert (
        f"the database holds 2 integration(s) with sealed credentials and needs the local "
        f"key(s) {lost_key}: restore the keyring that holds its keys to {settings.keyring}"
    ) in refused
    assert not settings.keyring.exists()

    forced = cli(settings, "keys", "init", "--force")
    assert forced.exit_code == 0, forced.output
    assert f"the keys {lost_key} are retired as lost" in forced.output
    new_key = LocalKeyring(settings.keyring).default_key_id
    assert database.read_blocking(custody.recorded) == {
        ("local", lost_key): custody.RETIRED,
        ("local", new_key): custody.PRIMARY,
    }
    services = start(settings)  # it starts again
    try:
        # the rows under the lost key are now those integrations' fault, not a lost key
        for tenant_id, integration_id, _ in made:
            blob = database.read_blocking(
                lambda conn, i=integration_id: conn.execute(
                    sa.select(integrations.c.sealed_credentials).where(integrations.c.id == i)
                ).scalar_one()
            )
            with pytest.raises(CredentialsUnreadable):
                open_credentials(
                    blob, SealContext(tenant_id, integration_id, "acme"), services.key_provider
                )
        assert services.key_provider.failures == 0
    finally:
        services.dispose()
    events = database.read_blocking(
        lambda conn: conn.execute(
            sa.select(audit_events.c.action).where(audit_events.c.chain == audit.SYSTEM_CHAIN)
        ).all()
    )
    assert [e.action for e in events] == ["keys.rotated"]


# -- deleting destroys the secret ------------------------------------------------------------


def sealed_and_deleted(database: Database) -> dict[str, tuple[bool, bool]]:
    """Every row's id -> (has sealed credentials, is deleted)."""
    return {
        row.id: (row.sealed_credentials is not None, row.deleted_at is not None)
        for row in database.read_blocking(
            lambda conn: conn.execute(
                sa.select(
                    integrations.c.id,
                    integrations.c.sealed_credentials,
                    integrations.c.deleted_at,
                )
            ).all()
        )
    }


def test_deleting_erases_the_sealed_credentials_and_rewrap_counts_live_rows_only(
    database: Database, settings: Settings
) -> None:
    keys = local_key_set(settings, database)
    service = IntegrationService(database, plugins().catalog(), keys)
    made = seed(database, keys, 5)
    gone = made[:3]
    for tenant_id, integration_id, _ in gone:
        anyio.run(service.delete, tenant_id, integration_id)
    rows = sealed_and_deleted(database)
    assert {i: rows[i] for _, i, _ in gone} == {i: (False, True) for _, i, _ in gone}
    assert {i: rows[i] for _, i, _ in made[3:]} == {i: (True, False) for _, i, _ in made[3:]}
    deleted_events = database.read_blocking(
        lambda conn: (
            conn.execute(
                sa.select(audit_events.c.resource_id).where(
                    audit_events.c.action == audit.INTEGRATION_DELETED
                )
            )
            .scalars()
            .all()
        )
    )
    assert sorted(deleted_events) == sorted(i for _, i, _ in gone)

    assert anyio.run(sealed_row_count, database) == 2
    assert anyio.run(key_usage, database) == {("local", keys.primary_key_id): 2}
    assert (
        f"* local {keys.primary_key_id}  primary  rows 2" in cli(settings, "keys", "status").output
    )
    assert cli(settings, "keys", "rotate").exit_code == 0
    rewrapped = cli(settings, "keys", "rewrap")
    assert "rewrapped 2, skipped 0 (changed meanwhile), failed 0" in rewrapped.output


def test_the_erasure_is_part_of_the_delete_transaction(
    database: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the delete's audit event cannot be written, nothing of the delete happens: the
    row is not deleted and keeps its credentials (one transaction: erase, delete, event)."""
    keys = local_key_set(settings, database)
    service = IntegrationService(database, plugins().catalog(), keys)
    [(tenant_id, integration_id, _)] = seed(database, keys, 1)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the audit trail is unavailable")

    monkeypatch.setattr(audit, "record_integration", broken)
    with pytest.raises(RuntimeError):
        anyio.run(service.delete, tenant_id, integration_id)
    assert sealed_and_deleted(database)[integration_id] == (True, False)
    monkeypatch.undo()
    view = anyio.run(service.get, tenant_id, integration_id)
    assert view.id == integration_id
    anyio.run(service.delete, tenant_id, integration_id)
    assert sealed_and_deleted(database)[integration_id] == (False, True)


def test_a_key_provider_plugin_selected_on_a_new_database_makes_no_keyring(
    settings: Settings,
) -> None:
    """With another key provider selected, a new database begins with its key and no local
    keyring is made."""

    class Kms:
        name = "kms"
        default_key_id = "kms-key-1"

        def __init__(self, settings: Settings) -> None:
            pass

        def wrap(self, key_id: str, data_key: bytes, associated_data: bytes) -> bytes:
            return data_key[::-1]

        def unwrap(self, key_id: str, wrapped: bytes, associated_data: bytes) -> bytes:
            return wrapped[::-1]

    from relaykit import hookimpl
    from relaykit.keys import KeyProviderSpec

    class Plugin:
        @hookimpl
        def relaykit_key_providers(self) -> Any:
            return [KeyProviderSpec("kms", Kms)]

    pm = make_plugin_manager(load_entrypoints=False, plugins=[("kms", Plugin())])
    chosen = with_env(settings, key_provider="kms")
    services = Services.open(chosen, pm)
    try:
        assert (services.key_provider.name, services.key_provider.primary_key_id) == (
            "kms",
            "kms-key-1",
        )
        assert not settings.keyring.exists()
        assert load_key_provider(chosen, pm).local is None
    finally:
        services.dispose()
