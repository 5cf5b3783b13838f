"""Migrations are the one way the schema is made, and they make what the models declare."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from relaykit.storage.database import Database
from relaykit.storage.models import metadata
from relaykit.storage.schema import current_revision, head_revision


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
