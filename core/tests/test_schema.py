"""Migrations are the one way the schema is made, and they make what the models declare."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from relaykit.settings import Settings
from relaykit.storage.database import Database, open_database
from relaykit.storage.models import metadata
from relaykit.storage.schema import current_revision, head_revision


def test_a_new_database_is_at_the_newest_revision(database: Database) -> None:
    assert current_revision(database) == head_revision()


def test_migrations_make_exactly_the_models(database: Database) -> None:
    with database.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        differences = compare_metadata(context, metadata)
    assert differences == []


def _open(url: str) -> str | None:
    settings = Settings.from_env(
        {"RELAYKIT_DATABASE_URL": url, "RELAYKIT_HOME": str(Path(url[10:]).parent)}
    )
    database = open_database(settings)
    try:
        return current_revision(database)
    finally:
        database.dispose()


def test_processes_starting_together_migrate_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        revisions = pool.map(_open, [url] * 8)
    assert set(revisions) == {head_revision()}


def test_the_database_under_test_is_the_one_asked_for(database: Database) -> None:
    from relaykit.testing.databases import server_url

    expected = "postgresql" if server_url() else "sqlite"
    assert database.engine.dialect.name == expected
