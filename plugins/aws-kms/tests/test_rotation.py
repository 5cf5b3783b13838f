"""Key custody with AWS KMS, through the CLI an operator uses: a new database begins with
``RELAYKIT_AWS_KMS_KEY_ID`` as its primary key; ``relaykit keys rotate --key-id`` names the
next KMS key (recorded in the database); ``relaykit keys rewrap`` moves every live row's data
key onto it online; ``relaykit keys retire`` then gives up the old one. All against moto's
KMS over real HTTP."""

from __future__ import annotations

import datetime as dt
import os
import secrets
from pathlib import Path

import anyio
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from relaykit.cli import CliState, build_cli
from relaykit.ids import new_id
from relaykit.keys import KeySet, custody, load_key_provider
from relaykit.plugins import make_plugin_manager
from relaykit.sealing import SealContext, open_credentials, read_blob, seal_credentials
from relaykit.settings import Settings
from relaykit.storage.database import Database, open_database
from relaykit.storage.models import integrations
from relaykit.tenants import create_tenant

from .kms_stand_in import REGION, Kms


@pytest.fixture
def settings(kms: Kms, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("RELAYKIT_AWS_KMS_KEY_ID", kms.new_key())
    monkeypatch.setenv("RELAYKIT_AWS_KMS_ENDPOINT_URL", kms.endpoint)
    monkeypatch.setenv("RELAYKIT_AWS_REGION", REGION)
    return Settings.from_env({"RELAYKIT_HOME": str(tmp_path), "RELAYKIT_KEY_PROVIDER": "aws-kms"})


def attached(settings: Settings, database: Database) -> KeySet:
    keys = load_key_provider(settings, make_plugin_manager(environ={}))
    custody.attach(keys, database, settings)
    return keys


def seed(database: Database, keys: KeySet, count: int) -> dict[str, tuple[str, str]]:
    """``count`` live integrations sealed under the primary key: id -> (tenant, secret)."""
    made = {}
    now = dt.datetime.now(dt.UTC)
    for _ in range(count):
        tenant = database.transaction_blocking(create_tenant, f"acme-{new_id()}")
        integration_id = new_id()
        secret = "sk_live_canary_" + secrets.token_hex(12)
        sealed = seal_credentials(
            {"secret_key": secret}, SealContext(tenant.id, integration_id, "stripe"), keys
        )
        database.transaction_blocking(
            lambda conn, i=integration_id, s=sealed, t=tenant.id: conn.execute(
                integrations.insert().values(
                    id=i,
                    tenant_id=t,
                    provider="stripe",
                    category="payments",
                    status="active",
                    enabled_capabilities=["create_payment"],
                    public_credentials={},
                    sealed_credentials=s,
                    metadata={},
                    credentials_version=1,
                    verify_attempts=0,
                    lease_reclaimed=False,
                    created_at=now,
                    updated_at=now,
                )
            )
        )
        made[integration_id] = (tenant.id, secret)
    return made


def blobs(database: Database) -> dict[str, bytes]:
    return database.read_blocking(
        lambda conn: {
            row.id: bytes(row.sealed_credentials)
            for row in conn.execute(sa.select(integrations.c.id, integrations.c.sealed_credentials))
        }
    )


def run(settings: Settings, *args: str) -> Result:
    pm = make_plugin_manager(environ={})
    return CliRunner().invoke(build_cli(pm), list(args), obj=CliState(settings, pm))


def test_a_new_database_begins_with_the_configured_kms_key_and_no_keyring(
    settings: Settings, kms: Kms
) -> None:
    database = open_database(settings)
    try:
        keys = attached(settings, database)
        assert (keys.name, keys.primary_key_id) == (
            "aws-kms",
            settings_key_id(),
        )
        assert not settings.keyring.exists()  # the local keyring is not made behind anyone
        assert database.read_blocking(custody.primary) == ("aws-kms", settings_key_id())
    finally:
        database.dispose()


def settings_key_id() -> str:
    return os.environ["RELAYKIT_AWS_KMS_KEY_ID"]


def test_rotate_to_a_new_kms_key_then_rewrap_online_then_retire(
    settings: Settings, kms: Kms
) -> None:
    database = open_database(settings)
    try:
        keys = attached(settings, database)
        old_key = keys.primary_key_id
        made = seed(database, keys, 5)
        before = blobs(database)

        new_key = kms.new_key()
        rotated = run(settings, "keys", "rotate", "--key-id", new_key)
        assert rotated.exit_code == 0, rotated.output
        assert f"new primary key aws-kms {new_key}" in rotated.output
        assert database.read_blocking(custody.primary) == ("aws-kms", new_key)

        # a running node sees the rotation at its next seal
        keys._checked = 0.0  # as if PRIMARY_REFRESH_SECONDS had passed
        anyio.run(keys.refresh)
        assert keys.primary_key_id == new_key

        refused = run(settings, "keys", "retire", old_key)
        assert refused.exit_code != 0 and "still wraps 5 rows" in refused.output

        rewrapped = run(settings, "keys", "rewrap", "--batch-size", "2")
        assert rewrapped.exit_code == 0, rewrapped.output
        assert "rewrapped 5, skipped 0 (changed meanwhile), failed 0" in rewrapped.output
        after = blobs(database)
        for integration_id, (tenant_id, secret) in made.items():
            old, new = read_blob(before[integration_id]), read_blob(after[integration_id])
            assert (old.key_id, new.key_id) == (old_key, new_key)
            # only the data key was rewrapped: the fields' ciphertext is the same bytes
            assert (new.nonce, new.ciphertext) == (old.nonce, old.ciphertext)
            context = SealContext(tenant_id, integration_id, "stripe")
            assert open_credentials(after[integration_id], context, keys) == {"secret_key": secret}
        again = run(settings, "keys", "rewrap")
        assert "rewrapped 0" in again.output  # idempotent

        retired = run(settings, "keys", "retire", old_key)
        assert retired.exit_code == 0, retired.output
        status = run(settings, "keys", "status").output
        assert f"* aws-kms {new_key}  primary  rows 5" in status
        assert f"  aws-kms {old_key}  retired  rows 0" in status
        assert not any(secret in status for _, secret in made.values())
    finally:
        database.dispose()


def test_rotate_refuses_a_kms_key_it_cannot_use(settings: Settings, kms: Kms) -> None:
    database = open_database(settings)
    try:
        keys = attached(settings, database)
        refused = run(settings, "keys", "rotate", "--key-id", "arn:aws:kms:us-east-1:123:key/none")
        assert refused.exit_code != 0
        assert "cannot use key" in refused.output
        assert database.read_blocking(custody.primary) == ("aws-kms", keys.primary_key_id)
    finally:
        database.dispose()


def test_rotate_without_a_key_id_says_kms_keys_come_from_kms(settings: Settings) -> None:
    database = open_database(settings)
    try:
        attached(settings, database)
        refused = run(settings, "keys", "rotate")
        assert refused.exit_code != 0
        assert "does not make keys" in refused.output
    finally:
        database.dispose()
