"""Migrations are the one way the schema is made, and they make what the models declare."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import msgspec
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from relaykit import tenants as tenant_store
from relaykit.ids import new_id, utcnow
from relaykit.integrations import IntegrationService
from relaykit.keys import KeySet, LocalKeyring, custody, local_key_set
from relaykit.plugins import make_plugin_manager
from relaykit.sealing import SealContext, open_credentials, seal
from relaykit.settings import Settings
from relaykit.storage.database import Database, open_database
from relaykit.storage.models import integrations, metadata, operations
from relaykit.storage.schema import current_revision, head_revision, upgrade

from .providers_for_tests import OneProvider, make_provider


def test_a_new_database_is_at_the_newest_revision(database: Database) -> None:
    assert current_revision(database) == head_revision()


def test_migrations_make_exactly_the_models(database: Database) -> None:
    with database.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        differences = compare_metadata(context, metadata)
    assert differences == []


OPEN_AND_REPORT = """
import sys
from relaykit.settings import Settings
from relaykit.storage.database import open_database
from relaykit.storage.schema import current_revision
database = open_database(Settings.from_env({"RELAYKIT_DATABASE_URL": sys.argv[1], "RELAYKIT_HOME": sys.argv[2]}))
print(current_revision(database))
"""


def test_processes_starting_together_migrate_once(tmp_path: Path, database_url: str) -> None:
    # Separate interpreters (not a multiprocessing pool: its children would have to import
    # this test module by name, which pytest's importlib mode does not make importable).
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AND_REPORT, database_url, str(tmp_path / "home")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [p.returncode for p in processes] == [0] * 6, outputs
    assert {out.strip() for out, _ in outputs} == {head_revision()}


def test_the_database_under_test_is_the_one_asked_for(database: Database) -> None:
    from relaykit.testing.databases import server_url

    expected = "postgresql" if server_url() else "sqlite"
    assert database.engine.dialect.name == expected


def test_upgrading_from_the_previous_revision_keeps_integrations_readable(
    settings: Settings,
) -> None:
    """A database made by 0006, before key custody (the keyring file said which key was
    primary; deleted rows kept their sealed credentials), upgrades to the newest revision:
    the deleted rows' secrets are erased, the first start records the keys the live rows use
    and takes the keyring's primary as the database's, and every live integration still
    reads and opens."""
    database = open_database(settings, migrate=False)
    upgrade(database, "0006")
    assert current_revision(database) == "0006"
    catalog = make_plugin_manager(
        load_entrypoints=False, plugins=[("acme", OneProvider(make_provider()))]
    ).catalog()
    keyring = LocalKeyring.create(settings.keyring)  # as 0006's code made it
    first_key = keyring.default_key_id
    live: list[tuple[str, str, str]] = []
    deleted: list[str] = []

    def insert(number: int, keys: KeySet, *, gone: bool) -> None:
        # Rows as 0006's code wrote them.
        tenant_id = database.transaction_blocking(tenant_store.create_tenant, f"t{number}").id
        integration_id = new_id()
        secret = f"key-{number}-secret"
        sealed = anyio.run(
            seal, {"api_key": secret}, SealContext(tenant_id, integration_id, "acme"), keys
        )
        now = utcnow()
        values = {
            "id": integration_id,
            "tenant_id": tenant_id,
            "provider": "acme",
            "category": "messaging",
            "status": "pending_verify",
            "enabled_capabilities": ["send_sms"],
            "public_credentials": {"account": f"a{number}"},
            "sealed_credentials": sealed,
            "credentials_version": 1,
            "metadata": {},
            "verification": None,
            "verify_attempts": 0,
            "next_verify_at": now,
            "verified_at": None,
            "created_at": now,
            "updated_at": now,
            "deleted_at": now if gone else None,
        }
        database.transaction_blocking(
            lambda conn, v=values: conn.execute(sa.insert(integrations).values(v))
        )
        if gone:
            deleted.append(integration_id)
        else:
            live.append((tenant_id, integration_id, secret))

    for number in range(5):
        insert(number, KeySet.single(keyring), gone=number >= 3)
    second_key = keyring.create_key()  # 0006's `relaykit keys rotate`: the file's primary
    for number in range(5, 7):
        insert(number, KeySet.single(keyring), gone=False)

    upgrade(database)
    assert current_revision(database) == head_revision()

    def blobs(conn: sa.Connection) -> dict[str, bytes | None]:
        query = sa.select(integrations.c.id, integrations.c.sealed_credentials)
        return {row.id: row.sealed_credentials for row in conn.execute(query)}

    stored = database.read_blocking(blobs)
    assert all(stored[i] is None for i in deleted)  # the migration erased them
    assert all(stored[i] is not None for _, i, _ in live)
    assert database.read_blocking(custody.recorded) == {}  # until the first start

    keys = local_key_set(settings, database)  # the first start on the upgraded database
    assert database.read_blocking(custody.recorded) == {
        ("local", first_key): custody.ACTIVE,
        ("local", second_key): custody.PRIMARY,
    }
    assert keys.primary_key_id == second_key
    service = IntegrationService(database, catalog, keys)
    for tenant_id, integration_id, secret in live:
        view = anyio.run(service.get, tenant_id, integration_id)
        assert view.status == "pending_verify"
        blob = stored[integration_id]
        assert blob is not None
        opened = open_credentials(blob, SealContext(tenant_id, integration_id, "acme"), keys)
        assert opened == {"api_key": secret}
    database.dispose()


def test_the_ledger_migration_gives_earlier_operations_the_ledgers_statuses(
    settings: Settings,
) -> None:
    """Operations written by the version before the ledger (0003): a pending one may have
    sent (outcome_unknown, key kept), failures where nothing was sent release their key, a
    lost answer becomes outcome_unknown, and every key now expires a day after it started."""
    database = open_database(settings, migrate=False)
    upgrade(database, "0003")
    tenant_id = database.transaction_blocking(tenant_store.create_tenant, "acme").id
    started = dt.datetime(2026, 11, 30, 8, 0, 0, 250000, tzinfo=dt.UTC)

    def old(status: str, key: str, code: str | None) -> dict[str, Any]:
        response = None if code is None else {"status_code": 409, "code": code, "data": {}}
        return {
            "id": new_id(),
            "tenant_id": tenant_id,
            "capability": "send_sms",
            "status": status,
            "integration_id": None,
            "idempotency_key": key,
            "request_hash": "h",
            "response": response,
            "created_at": started,
            "completed_at": None,
        }

    made = {
        "pending": old("pending", "k-pending", None),
        "no_route": old("failed", "k-no-route", "no_active_provider"),
        "unavailable": old("failed", "k-unavailable", "provider_unavailable"),
        "lost": old("failed", "k-lost", "provider_outcome_unknown"),
        "rejected": old("failed", "k-rejected", "provider_rejected"),
        "sent": old("succeeded", "k-sent", None),
    }
    columns = sa.table(
        "operations", *(sa.column(name) for name in made["pending"])
    )  # the 0003 table, without the new columns
    database.transaction_blocking(
        lambda conn: conn.execute(
            sa.insert(columns),
            [
                {
                    **values,
                    "response": msgspec.json.encode(values["response"]).decode()
                    if values["response"]
                    else None,
                    "created_at": f"{started:%Y-%m-%d %H:%M:%S.%f}"
                    if database.dialect == "sqlite"
                    else started,
                }
                for values in made.values()
            ],
        )
    )
    upgrade(database)
    found = {
        row.id: row
        for row in database.read_blocking(lambda conn: conn.execute(sa.select(operations)).all())
    }
    after = {name: found[values["id"]] for name, values in made.items()}
    assert after["pending"].status == "outcome_unknown"
    assert after["pending"].idempotency_key == "k-pending"
    assert after["no_route"].idempotency_key is None
    assert after["unavailable"].idempotency_key is None
    assert after["lost"].status == "outcome_unknown" and after["lost"].idempotency_key == "k-lost"
    assert after["rejected"].status == "failed" and after["rejected"].idempotency_key
    assert after["sent"].status == "succeeded"
    for name in ("pending", "lost", "rejected", "sent"):
        assert after[name].key_expires_at == started + dt.timedelta(days=1), name
    database.dispose()
