"""The database handle's fast paths: plain-SQL reads, the read cache, inline writes.

Each test runs on SQLite and, in the postgres tox env, on PostgreSQL; what only SQLite has
(the cache, inline writes) is asserted to be off elsewhere.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from relaykit.sealing import LocalKeyring, runs_in_process
from relaykit.settings import Settings
from relaykit.storage import tenants as store
from relaykit.storage.database import Database, WriteWouldWait, json_value, open_database


def test_fetch_runs_plain_sql_on_either_database(database: Database) -> None:
    tenant = database.write(store.create_tenant, "acme")
    rows = database.fetch("SELECT id, name FROM tenants WHERE name = ?", ("acme",))
    assert [tuple(row) for row in rows] == [(tenant.id, "acme")]
    counted, names = database.fetch_together(
        [("SELECT count(*) FROM tenants", ()), ("SELECT name FROM tenants ORDER BY name", ())]
    )
    assert counted[0][0] == 1 and [row[0] for row in names] == ["acme"]
    assert json_value('{"a": [1]}') == {"a": [1]} and json_value({"a": 1}) == {"a": 1}


def test_cached_reads_end_at_a_commit_from_another_connection(settings: Settings) -> None:
    reader = open_database(settings)
    writer = open_database(settings, migrate=False)  # another pool: like another process
    try:
        writer.write(store.create_tenant, "acme")
        sql = "SELECT name FROM tenants ORDER BY name"
        calls: list[int] = []

        def names() -> list[str]:
            calls.append(1)
            return [row[0] for row in reader.fetch(sql)]

        assert reader.cached("names", names) == ["acme"]
        assert reader.cached("names", names) == ["acme"]
        expected_calls = 1 if reader.read_cache else 2
        assert len(calls) == expected_calls
        writer.write(store.create_tenant, "beta")
        assert reader.cached("names", names) == ["acme", "beta"]  # never the stale list
        _, token = writer.write(store.create_token, "acme")
        assert store.authenticate(reader, token) is not None
        assert reader.fetch(*store.token_query(token), cache=True)
        writer.write(store.revoke_token, token)
        assert (
            store.token_tenant(token, reader.fetch(*store.token_query(token), cache=True)) is None
        )
    finally:
        reader.dispose()
        writer.dispose()


def test_the_cache_is_sqlite_only_and_can_be_switched_off(settings: Settings) -> None:
    off = Settings.from_env(
        {
            "RELAYKIT_HOME": str(settings.home),
            "RELAYKIT_DATABASE_URL": settings.database_url,
            "RELAYKIT_READ_CACHE": "0",
        }
    )
    database = open_database(off)
    try:
        assert database.read_cache is False
        calls: list[int] = []
        for _ in range(2):
            database.cached("k", lambda: calls.append(1))
        assert len(calls) == 2
    finally:
        database.dispose()
    on = open_database(settings)
    try:
        assert on.read_cache is settings.is_sqlite
    finally:
        on.dispose()


def test_an_inline_write_never_waits_for_the_lock(database: Database, settings: Settings) -> None:
    if not database.inline_writes_allowed:
        pytest.skip("inline writes are a SQLite path")
    holder = sqlite3.connect(str(database.url.database), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process is writing
        with database.inline_writes(), pytest.raises(WriteWouldWait):
            database.write(store.create_tenant, "acme")
        holder.execute("COMMIT")
        with database.inline_writes():
            database.write(store.create_tenant, "acme")
        assert [t.name for t in database.read(store.list_tenants)] == ["acme"]
        # Ordinary writes keep their busy timeout: they wait for another process's lock.
        with database.engine.connect() as conn:
            busy = conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one()
        assert busy > 0
        holder.execute("BEGIN IMMEDIATE")
        with database.inline_writes(), pytest.raises(WriteWouldWait):
            database.write(store.create_tenant, "beta")  # the kept connection: no change
        holder.execute("ROLLBACK")
    finally:
        holder.close()


def test_a_failed_commit_does_not_keep_the_write_lock(database: Database) -> None:
    """A COMMIT can fail (here a deferred foreign key; in life a full disk) and leave SQLite
    inside the transaction: the inline connection is dropped, so the lock is not kept."""
    if not database.inline_writes_allowed:
        pytest.skip("inline writes are a SQLite path")

    def make_tables(conn: sa.Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE t_parent (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql(
            "CREATE TABLE t_child (parent INTEGER REFERENCES t_parent (id)"
            " DEFERRABLE INITIALLY DEFERRED)"
        )

    database.write(make_tables)
    with database.inline_writes(), pytest.raises(sa.exc.IntegrityError):
        database.write(lambda conn: conn.exec_driver_sql("INSERT INTO t_child VALUES (999)"))
    other = sqlite3.connect(str(database.url.database), isolation_level=None, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")  # the write lock is free again
        other.execute("ROLLBACK")
    finally:
        other.close()
    with database.inline_writes():
        database.write(store.create_tenant, "acme")  # and the next inline write works
    assert [t.name for t in database.read(store.list_tenants)] == ["acme"]


def test_only_an_in_process_key_provider_runs_on_the_loop(tmp_path: Path) -> None:
    assert runs_in_process(LocalKeyring.in_home(tmp_path))

    class Remote:  # a KMS-backed provider says nothing: it runs in a thread
        name = "kms"

    assert not runs_in_process(Remote())  # type: ignore[arg-type]
