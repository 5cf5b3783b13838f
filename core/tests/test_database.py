"""The database handle: where units of work run, plain-SQL reads, the read cache, inline
writes.

Each test runs on SQLite and, in the postgres tox env, on PostgreSQL; what only SQLite has
(the cache, inline writes) is asserted to be off elsewhere.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa

from relaykit import tenants as store
from relaykit.keys import LocalKeyring
from relaykit.keys.loading import KeySet
from relaykit.sealing import runs_in_process
from relaykit.settings import Settings
from relaykit.storage.database import Database, json_value, open_database
from relaykit.storage.inline import WriteWouldWait

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_fetch_runs_plain_sql_on_either_database(database: Database) -> None:
    tenant = database.transaction_blocking(store.create_tenant, "acme")
    rows = await database.fetch("SELECT id, name FROM tenants WHERE name = ?", ("acme",))
    assert [tuple(row) for row in rows] == [(tenant.id, "acme")]
    counted, names = await database.fetch_together(
        [("SELECT count(*) FROM tenants", ()), ("SELECT name FROM tenants ORDER BY name", ())]
    )
    assert counted[0][0] == 1 and [row[0] for row in names] == ["acme"]
    assert json_value('{"a": [1]}') == {"a": [1]} and json_value({"a": 1}) == {"a": 1}


async def test_reads_and_transactions_run_where_the_database_says(database: Database) -> None:
    """On SQLite a read, and a write whose lock is free, run on the calling (event-loop)
    thread; on PostgreSQL a read runs in a worker thread, and a write on the loop (the
    asyncio engine's run_sync). The caller cannot tell them apart."""
    loop_thread = threading.get_ident()

    def where(conn: sa.Connection) -> int:
        return threading.get_ident()

    sqlite = database.dialect == "sqlite"
    assert (await database.read(where) == loop_thread) is sqlite
    assert await database.transaction(where) == loop_thread


async def test_a_transaction_runs_once_even_when_the_lock_is_taken(database: Database) -> None:
    """Another process holds SQLite's write lock: the transaction does not run on the loop,
    it waits in a thread and runs once, when the lock is free."""
    if database.dialect != "sqlite":
        pytest.skip("the write lock and inline writes are SQLite's")
    holder = sqlite3.connect(str(database.url.database), isolation_level=None)
    calls: list[int] = []

    def create(conn: sa.Connection) -> store.TenantRecord:
        calls.append(threading.get_ident())
        return store.create_tenant(conn, "acme")

    try:
        holder.execute("BEGIN IMMEDIATE")  # another process is writing
        async with anyio.create_task_group() as group:
            group.start_soon(database.transaction, create)
            await anyio.sleep(0.2)
            assert calls == []  # not run on the loop, and not yet in the thread
            holder.execute("COMMIT")
        assert len(calls) == 1 and calls[0] != threading.get_ident()
        assert [t.name for t in await database.read(store.list_tenants)] == ["acme"]
        # The next write finds the lock free and runs inline again, on the kept connection.
        await database.transaction(store.create_tenant, "beta")
        assert [t.name for t in await database.read(store.list_tenants)] == ["acme", "beta"]
    finally:
        holder.close()


def test_the_inline_writer_refuses_before_running_anything(database: Database) -> None:
    if database.dialect != "sqlite":
        pytest.skip("inline writes are SQLite's")
    inline = database._inline
    assert inline is not None
    holder = sqlite3.connect(str(database.url.database), isolation_level=None)
    ran: list[int] = []
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(WriteWouldWait):
            inline.run(lambda conn: ran.append(1))
        holder.execute("ROLLBACK")
        inline.run(lambda conn: ran.append(1))
        assert ran == [1]
        # Ordinary writes keep their busy timeout: they wait for another process's lock.
        with database.engine.connect() as conn:
            busy = conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one()
        assert busy > 0
    finally:
        holder.close()


async def test_a_failed_commit_does_not_keep_the_write_lock(database: Database) -> None:
    """A COMMIT can fail (here a deferred foreign key; in life a full disk) and leave SQLite
    inside the transaction: the inline connection is dropped, so the lock is not kept."""
    if database.dialect != "sqlite":
        pytest.skip("inline writes are SQLite's")

    def make_tables(conn: sa.Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE t_parent (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql(
            "CREATE TABLE t_child (parent INTEGER REFERENCES t_parent (id)"
            " DEFERRABLE INITIALLY DEFERRED)"
        )

    await database.transaction(make_tables)
    with pytest.raises(sa.exc.IntegrityError):
        await database.transaction(
            lambda conn: conn.exec_driver_sql("INSERT INTO t_child VALUES (999)")
        )
    other = sqlite3.connect(str(database.url.database), isolation_level=None, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")  # the write lock is free again
        other.execute("ROLLBACK")
    finally:
        other.close()
    await database.transaction(store.create_tenant, "acme")  # and the next write works
    assert [t.name for t in await database.read(store.list_tenants)] == ["acme"]


async def test_transactions_started_together_share_one_commit(database: Database) -> None:
    """Group commit (SQLite): transactions started in one turn of the loop run in one
    SQLite transaction, each in a savepoint; one that raises loses its own work only and
    its caller gets the error; every caller returns after the one commit."""
    if database.dialect != "sqlite":
        pytest.skip("group commit is SQLite's")
    assert database._inline is not None
    commits: list[int] = []
    sa.event.listen(database._inline._engine, "commit", lambda conn: commits.append(1))

    def create(name: str) -> Any:
        def fn(conn: sa.Connection) -> int:
            store.create_tenant(conn, name)
            if name == "bad":
                raise ValueError("refused after its insert")
            return int(conn.exec_driver_sql("SELECT count(*) FROM tenants").scalar_one())

        return fn

    outcomes: dict[str, Any] = {}

    async def run(name: str) -> None:
        try:
            outcomes[name] = await database.transaction(create(name))
        except ValueError as error:
            outcomes[name] = error

    async with anyio.create_task_group() as group:
        for name in ("a", "b", "bad", "c", "d"):
            group.start_soon(run, name)
    assert commits == [1]
    # each saw the ones before it in the batch (one transaction); "bad" lost its insert
    assert [outcomes[name] for name in ("a", "b", "c", "d")] == [1, 2, 3, 4]
    assert isinstance(outcomes["bad"], ValueError)
    other = sqlite3.connect(str(database.url.database))
    try:
        names = [row[0] for row in other.execute("SELECT name FROM tenants ORDER BY name")]
    finally:
        other.close()
    assert names == ["a", "b", "c", "d"]
    # a transaction alone still commits on its own, and an error in it keeps nothing
    with pytest.raises(ValueError):
        await database.transaction(create("bad"))
    assert await database.transaction(create("e")) == 5
    assert commits == [1, 1]


async def test_cached_reads_end_at_a_commit_from_another_connection(settings: Settings) -> None:
    reader = open_database(settings)
    writer = open_database(settings, migrate=False)  # another pool: like another process
    try:
        writer.transaction_blocking(store.create_tenant, "acme")
        sql = "SELECT name FROM tenants ORDER BY name"
        calls: list[int] = []

        async def names() -> list[str]:
            calls.append(1)
            return [row[0] for row in await reader.fetch(sql)]

        assert await reader.cached("names", names) == ["acme"]
        assert await reader.cached("names", names) == ["acme"]
        assert len(calls) == (1 if reader.read_cache else 2)
        writer.transaction_blocking(store.create_tenant, "beta")
        assert await reader.cached("names", names) == ["acme", "beta"]  # never the stale list
        _, token = writer.transaction_blocking(store.create_token, "acme")
        assert await store.authenticate(reader, token) is not None
        writer.transaction_blocking(store.revoke_token, token)
        assert await store.authenticate(reader, token) is None
    finally:
        reader.dispose()
        writer.dispose()


async def test_within_a_scope_one_check_serves_until_the_scope_writes(database: Database) -> None:
    if not database.read_cache:
        pytest.skip("the read cache is SQLite's")
    calls: list[int] = []

    async def count() -> int:
        calls.append(1)
        return int((await database.fetch("SELECT count(*) FROM tenants"))[0][0])

    with database.read_scope():
        assert await database.cached("n", count) == 0
        await database.transaction(store.create_tenant, "acme")  # the scope's own write
        assert await database.cached("n", count) == 1  # asked again: not the stale 0
    assert len(calls) == 2


async def test_the_cache_is_sqlite_only_and_can_be_switched_off(settings: Settings) -> None:
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

        async def compute() -> None:
            calls.append(1)

        for _ in range(2):
            await database.cached("k", compute)
        assert len(calls) == 2
    finally:
        database.dispose()
    on = open_database(settings)
    try:
        assert on.read_cache is settings.database_url.startswith("sqlite")
    finally:
        on.dispose()


def test_only_an_in_process_key_provider_runs_on_the_loop(tmp_path: Path) -> None:
    local = LocalKeyring.create(tmp_path / "keyring.json")
    assert runs_in_process(local)

    class Remote:  # a KMS-backed provider says nothing: it runs in a thread
        name = "kms"
        default_key_id = "kms-1"

    assert not runs_in_process(Remote())  # type: ignore[arg-type]
    # What the server holds is a KeySet: it runs on the loop only when every provider it
    # holds does, since a blob it opens may name any of them, not only the primary's.
    assert runs_in_process(KeySet.single(local))
    assert runs_in_process(KeySet({"local": local}, primary=("local", local.default_key_id)))
    mixed: dict[str, Any] = {"local": local, "kms": Remote()}
    assert not runs_in_process(KeySet(mixed, primary=("local", local.default_key_id)))
    assert not runs_in_process(KeySet(mixed, primary=("kms", "kms-1")))


def test_a_fast_statement_stores_what_sqlalchemy_would(database: Database) -> None:
    """storage.fast.Statement on SQLite binds as SQLAlchemy does (JSON text, 'null' for
    None, timestamps, booleans, constants of an IN), answers rowcount and fetchone, and
    raises SQLAlchemy's errors; on PostgreSQL it is conn.execute."""
    import datetime as dt

    from relaykit.storage.fast import Statement
    from relaykit.storage.models import integrations

    tenant = database.transaction_blocking(store.create_tenant, "acme")
    now = dt.datetime(2026, 1, 10, 8, 45, tzinfo=dt.UTC)

    def values(integration_id: str, provider: str) -> dict[str, Any]:
        return {
            "id": integration_id,
            "tenant_id": tenant.id,
            "provider": provider,
            "category": "communication",
            "status": "active",
            "enabled_capabilities": ["send_sms"],
            "public_credentials": {"account": "a1"},
            "sealed_credentials": b"\x00sealed",
            "credentials_version": 1,
            "metadata": {"team": "ops"},
            "verification": None,
            "verify_attempts": 0,
            "created_at": now,
            "updated_at": now,
        }

    insert = Statement(integrations.insert())
    fast_id, plain_id = "01" + "a" * 24, "01" + "b" * 24
    database.transaction_blocking(lambda conn: insert.execute(conn, values(fast_id, "one")))
    database.transaction_blocking(
        lambda conn: conn.execute(integrations.insert(), values(plain_id, "two"))
    )
    columns = [c for c in integrations.columns if c.name not in ("id", "provider")]

    def raw(integration_id: str) -> tuple[Any, ...]:
        return tuple(
            database.fetch_blocking(
                [
                    (
                        f"SELECT {', '.join(c.name for c in columns)} FROM integrations"  # noqa: S608
                        " WHERE id = ?",
                        (integration_id,),
                    )
                ]
            )[0][0]
        )

    assert raw(fast_id) == raw(plain_id)
    with pytest.raises(sa.exc.IntegrityError):  # the same id again: SQLAlchemy's error
        database.transaction_blocking(lambda conn: insert.execute(conn, values(fast_id, "three")))
    if database.dialect == "sqlite":  # a name the statement does not take is refused
        with pytest.raises(ValueError, match="does not take"):
            database.transaction_blocking(
                lambda conn: insert.execute(conn, {**values(plain_id, "four"), "nonsense": 1})
            )
    # constants of the statement (an IN, a comparison) are bound too; rowcount answers
    move = Statement(
        integrations.update()
        .where(
            integrations.c.tenant_id == sa.bindparam("b_tenant"),
            integrations.c.status == "active",
            integrations.c.provider.not_in(["two", "zzz"]),
        )
        .values(status="disabled", updated_at=sa.bindparam("b_now"))
    )
    moved = database.transaction_blocking(
        lambda conn: move.execute(conn, {"b_tenant": tenant.id, "b_now": now}).rowcount
    )
    assert moved == 1
    statuses = database.fetch_blocking([("SELECT id, status FROM integrations ORDER BY id", ())])
    assert [tuple(row) for row in statuses[0]] == [(fast_id, "disabled"), (plain_id, "active")]


async def test_postgresql_hot_reads_survive_a_dropped_connection(database: Database) -> None:
    """PostgreSQL's fetch runs on the loop's own psycopg connections (storage.pg_reads): a
    connection the server dropped is replaced and the read sent again; a failed statement
    is SQLAlchemy's error and leaves the next read working; statements read together see
    one snapshot."""
    if database.dialect != "postgresql":
        pytest.skip("pg_reads is PostgreSQL's")
    database.transaction_blocking(store.create_tenant, "acme")
    sql = "SELECT name FROM tenants WHERE name = ?"
    assert [row[0] for row in await database.fetch(sql, ("acme",))] == ["acme"]
    # the server ends every other session (as a restart or a dropped network would)
    database.read_blocking(
        lambda conn: conn.exec_driver_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).all()
    )
    assert [row[0] for row in await database.fetch(sql, ("acme",))] == ["acme"]
    with pytest.raises(sa.exc.ProgrammingError):
        await database.fetch_together([(sql, ("acme",)), ("SELECT nonsense FROM tenants", ())])
    counted, names = await database.fetch_together(
        [("SELECT count(*) FROM tenants", ()), ("SELECT name FROM tenants", ())]
    )
    assert counted[0][0] == 1 and [row[0] for row in names] == ["acme"]


async def test_each_transaction_of_a_batch_runs_in_its_callers_context(
    database: Database,
) -> None:
    """The batch runs in a loop callback; each function still sees its own caller's
    context variables (the audit actor and request id are read inside transactions)."""
    import contextvars

    who: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")
    seen: dict[str, str] = {}

    async def run(name: str) -> None:
        who.set(name)
        seen[name] = await database.transaction(lambda conn: who.get())

    async with anyio.create_task_group() as group:
        for name in ("a", "b", "c"):
            group.start_soon(run, name)
    assert seen == {"a": "a", "b": "b", "c": "c"}
