"""Migrations are the one way the schema is made, and they make what the models declare."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from relaykit import tenants as tenant_store
from relaykit.integrations import IntegrationService
from relaykit.keys import LocalKeyring
from relaykit.plugins import make_plugin_manager
from relaykit.sealing import SealContext, open_credentials
from relaykit.settings import Settings
from relaykit.storage.database import Database, open_database
from relaykit.storage.models import integrations, metadata
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
    """A database made by 0001 (integrations with sealed credentials in it) upgrades to the
    newest revision and every integration still reads and opens."""
    database = open_database(settings, migrate=False)
    upgrade(database, "0001")
    assert current_revision(database) == "0001"
    catalog = make_plugin_manager(
        load_entrypoints=False, plugins=[("acme", OneProvider(make_provider()))]
    ).catalog()
    keyring = LocalKeyring.in_home(settings.home)
    service = IntegrationService(database, catalog, keyring)
    made = []
    for number in range(5):
        tenant_id = database.transaction_blocking(tenant_store.create_tenant, f"t{number}").id
        body = {
            "provider": "acme",
            "credentials": {"api_key": f"key-{number}-secret", "account": f"a{number}"},
            "enabled_capabilities": ["send_sms"],
        }
        view = anyio.run(service.create, tenant_id, body)
        made.append((tenant_id, view))

    upgrade(database)
    assert current_revision(database) == head_revision()
    for number, (tenant_id, before) in enumerate(made):
        after = anyio.run(service.get, tenant_id, before.id)
        assert after == before
        row = database.read_blocking(
            lambda conn, i=before.id: conn.execute(
                sa.select(integrations.c.sealed_credentials).where(integrations.c.id == i)
            ).scalar_one()
        )
        opened = open_credentials(row, SealContext(tenant_id, before.id, "acme"), keyring)
        assert opened == {"api_key": f"key-{number}-secret"}
    database.dispose()
