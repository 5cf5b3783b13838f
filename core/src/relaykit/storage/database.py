"""The database handle: where each unit of work runs, and the connections it runs on.

Data access is synchronous SQLAlchemy Core (plain SQL for the hottest reads), one
transaction per unit of work; :class:`Database` runs each unit where it costs least and
alone makes that choice. On SQLite, reads run on the event loop (they never wait in WAL
mode) and so do writes while the write lock is free (:mod:`relaykit.storage.inline`); on
PostgreSQL every unit of work runs in a worker thread. A thread hop per unit of work, not
per statement, which is what made the async ORM over aiosqlite slow (docs/performance.md).

On SQLite, pysqlite's own transaction handling is switched off so that relaykit emits the
``BEGIN`` itself: reads use a deferred ``BEGIN``; writes use ``BEGIN IMMEDIATE``, which takes
the write lock up front, so two concurrent writers queue on ``busy_timeout`` instead of one
failing with "database is locked" when it tries to upgrade a read lock
(https://docs.sqlalchemy.org/en/20/dialects/sqlite.html#serializable-isolation-savepoints-transactional-ddl).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Hashable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import anyio.to_thread
import msgspec
import sqlalchemy as sa

from relaykit.ids import isoformat_z
from relaykit.settings import Settings
from relaykit.storage.inline import GroupCommit, InlineWriter, WriteWouldWait
from relaykit.storage.read_cache import ReadCache, forget_scope_version, read_scope

if TYPE_CHECKING:
    from relaykit.storage.pg_reads import PgReads

T = TypeVar("T")
P = ParamSpec("P")

#: A unique index refused a row (services turn it into the API's own answer).
IntegrityError = sa.exc.IntegrityError
#: The database could not be reached, or stayed locked past the busy timeout.
OperationalError = sa.exc.OperationalError
#: Any error the database reported (the two above included).
DatabaseError = sa.exc.DBAPIError

_WRITE_OPTION = "relaykit_write"
# A process's PostgreSQL connections, at most 30 (docs/deployment.md): write transactions
# on the event loop; the hot reads (storage.pg_reads); every other read, in worker threads,
# and the synchronous programs (the CLI, migrations).
PG_WRITE_POOL = {"pool_size": 10, "max_overflow": 5}
PG_HOT_READ_CONNECTIONS = 10
PG_OTHER_POOL = {"pool_size": 5, "max_overflow": 0}
SQLITE_BUSY_TIMEOUT_MS = 30_000


class Database:
    """One database: where each unit of work runs, and the SQL connections it runs on.

    Callers hand it a function of a connection and await the result; the handle alone
    decides where the function runs (see the module docstring):

    * :meth:`read` and :meth:`fetch`: inline on SQLite, in a worker thread elsewhere;
    * :meth:`transaction`: inline on SQLite while the write lock is free
      (:mod:`relaykit.storage.inline`), else in a worker thread, where it waits its turn.

    Either way the function runs once. It must do nothing but database work through the
    connection it is given: it may run on the event loop. The ``*_blocking`` twins are for
    synchronous programs (the CLI, migrations, tooling), never for code on an event loop.
    """

    def __init__(self, url: str, *, pool_size: int = 20, read_cache: bool = True) -> None:
        self.url = sa.engine.make_url(url)
        self.dialect = self.url.get_backend_name()
        sqlite = self.dialect == "sqlite"
        kwargs: dict[str, Any] = {"pool_size": pool_size}
        if self.dialect == "postgresql":  # the rest of the budget: PG_* below
            kwargs.update(PG_OTHER_POOL)
        if sqlite:
            if self.url.database and self.url.database != ":memory:":
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False}
        else:
            kwargs["pool_pre_ping"] = True
        # msgspec reads and writes the JSON columns: several times faster than the json
        # module on the list path (four JSON columns a row), and it encodes Structs.
        kwargs["json_serializer"] = _encode_json
        kwargs["json_deserializer"] = msgspec.json.decode
        self.engine = sa.create_engine(self.url, **kwargs)
        self._write_engine = self.engine.execution_options(**{_WRITE_OPTION: True})
        # SQLite has one writer at a time. Writers of this process queue on this lock instead
        # of on SQLite's busy handler, which sleeps in steps of 1 to 100 ms while it waits.
        # Other processes still queue on busy_timeout.
        sqlite_lock = threading.Lock()
        self._write_lock: threading.Lock | contextlib.nullcontext[None] = (
            sqlite_lock if sqlite else contextlib.nullcontext()
        )
        # SQLite reads are quick and, in WAL mode, never wait for a lock: they run inline
        # instead of hopping to a worker thread, whose cost under load (thread switches, the
        # GIL passed back and forth) was more than the read's own.
        self._reads_inline = sqlite
        self._inline: InlineWriter | None = None
        self._group: GroupCommit | None = None
        self._raw = _RawConnections(self.url.database or "") if _is_file(self.url) else None
        if sqlite:
            self._install_sqlite_hooks(self.engine)
            inline_engine = sa.create_engine(
                self.url,
                connect_args={"check_same_thread": False},
                poolclass=sa.pool.StaticPool,
                json_serializer=_encode_json,
                json_deserializer=msgspec.json.decode,
            ).execution_options(**{_WRITE_OPTION: True})
            self._install_sqlite_hooks(inline_engine, busy_timeout_ms=0)
            self._inline = InlineWriter(inline_engine, sqlite_lock)
            self._group = GroupCommit(
                self._inline,
                lambda fn: anyio.to_thread.run_sync(self.transaction_blocking, fn),
            )
        self._cache = ReadCache(self._raw.current if read_cache and self._raw is not None else None)
        # PostgreSQL's write transactions on the event loop: SQLAlchemy's asyncio engine over
        # psycopg's async connections runs each transaction's (synchronous) function with
        # run_sync (greenlet), with no worker thread; its pool is PG_WRITE_POOL.
        self._async_engine: Any = None
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._async_kwargs = {**kwargs, **PG_WRITE_POOL}
        self._async_writes = (
            self.dialect == "postgresql" and self.url.get_driver_name() == "psycopg"
        )
        # PostgreSQL's hot reads: psycopg's async connections on the event loop (pg_reads)
        self._pg_reads: PgReads | None = None
        if self._async_writes:  # PostgreSQL over psycopg
            from relaykit.storage.pg_reads import PgReads  # psycopg: the postgres extra

            self._pg_reads = PgReads(
                self.url, self.engine.dialect, max_connections=PG_HOT_READ_CONNECTIONS
            )

    @staticmethod
    def _install_sqlite_hooks(engine: sa.Engine, *, busy_timeout_ms: int | None = None) -> None:
        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            _configure_sqlite(dbapi_connection)
            if busy_timeout_ms is not None:
                dbapi_connection.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            write = conn.get_execution_options().get(_WRITE_OPTION, False)
            # on the driver's connection (SQLAlchemy's execution path cost more than BEGIN),
            # its error raised as SQLAlchemy's (a busy lock: OperationalError)
            begin = "BEGIN IMMEDIATE" if write else "BEGIN"
            try:
                conn.connection.dbapi_connection.execute(begin)  # type: ignore[union-attr]
            except sqlite3.Error as error:
                raise sa.exc.DBAPIError.instance(
                    begin, (), error, sqlite3.Error, dialect=conn.dialect
                ) from error

    @property
    def read_cache(self) -> bool:
        """Whether :meth:`cached` keeps results (SQLite file, RELAYKIT_READ_CACHE on)."""
        return self._cache.enabled

    def describe(self) -> str:
        """The URL, without its password, for logs and the CLI."""
        return self.url.render_as_string(hide_password=True)

    # -- units of work -----------------------------------------------------------------------

    async def read(
        self, fn: Callable[Concatenate[sa.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``fn(conn, *args, **kwargs)`` in one read transaction."""
        if self._reads_inline:
            return self.read_blocking(fn, *args, **kwargs)
        return await anyio.to_thread.run_sync(lambda: self.read_blocking(fn, *args, **kwargs))

    async def transaction(
        self, fn: Callable[Concatenate[sa.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``fn(conn, *args, **kwargs)`` in one write transaction, committed before this
        returns. ``fn`` runs once, here or in a worker thread."""
        forget_scope_version()  # what this request read before its own write is not current
        try:
            if self._group is not None and _on_asyncio():
                # with the transactions other requests start in this turn of the loop
                return await self._group.run(
                    (lambda conn: fn(conn, *args, **kwargs)) if args or kwargs else fn
                )
            if self._async_writes and _on_asyncio():
                async with self._loop_engine().begin() as conn:
                    return await conn.run_sync(lambda sync: fn(sync, *args, **kwargs))
            if self._inline is not None:
                try:
                    return self._inline.run(
                        functools.partial(fn, **kwargs) if kwargs else fn, *args
                    )
                except WriteWouldWait:
                    pass  # the lock is taken and fn has not run: it waits in a thread
            return await anyio.to_thread.run_sync(
                lambda: self.transaction_blocking(fn, *args, **kwargs)
            )
        finally:
            forget_scope_version()  # nor what it read while the write was under way

    def read_blocking(
        self, fn: Callable[Concatenate[sa.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """:meth:`read` for synchronous programs: runs in the calling thread."""
        with self.engine.begin() as conn:
            return fn(conn, *args, **kwargs)

    def transaction_blocking(
        self, fn: Callable[Concatenate[sa.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """:meth:`transaction` for synchronous programs: waits for the lock if it must."""
        with self._write_lock, self._write_engine.begin() as conn:
            return fn(conn, *args, **kwargs)

    # -- plain SQL reads ---------------------------------------------------------------------

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """The rows (tuples) of one read-only statement in plain SQL with ``?`` placeholders.

        The hot reads (the token check, the integration list and get, the dispatch's route)
        use this instead of SQLAlchemy Core, whose statement caching and per-row type
        processing cost several times the query itself on SQLite (docs/performance.md).
        Values come back raw: read timestamps and JSON columns with :func:`timestamp_text`
        and :func:`json_value`. On a SQLite file each thread keeps a connection of its own
        (autocommit, WAL: a read never waits for a writer); elsewhere a pooled one runs it.
        """
        return (await self.fetch_together([(sql, params)]))[0]

    async def fetch_together(
        self, statements: Sequence[tuple[str, Sequence[Any]]]
    ) -> list[list[Any]]:
        """:meth:`fetch` for several statements that must see one snapshot (a page and its
        total): one read transaction, repeatable read on PostgreSQL."""
        if self._reads_inline:
            return self.fetch_blocking(statements)
        if self._pg_reads is not None and _on_asyncio():
            return await self._pg_reads.fetch_together(statements)
        return await anyio.to_thread.run_sync(self.fetch_blocking, statements)

    def fetch_blocking(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        """:meth:`fetch_together` for synchronous programs."""
        if self._raw is not None:
            connection = self._raw.current()
            if len(statements) == 1:
                sql, params = statements[0]
                return [connection.execute(sql, params).fetchall()]
            connection.execute("BEGIN")
            try:
                return [connection.execute(sql, params).fetchall() for sql, params in statements]
            finally:
                connection.execute("COMMIT")
        options: dict[str, Any] = (
            {} if self._reads_inline else {"isolation_level": "REPEATABLE READ"}
        )
        with self.engine.connect().execution_options(**options) as conn, conn.begin():
            return [
                list(conn.exec_driver_sql(driver_sql(conn, sql), tuple(params)).all())
                for sql, params in statements
            ]

    # -- the read cache ----------------------------------------------------------------------

    async def cached(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> T:
        """``await compute()``, or what it gave before for ``key`` if nothing was committed
        since by anyone (:mod:`relaykit.storage.read_cache`; off on PostgreSQL)."""
        return await self._cache.get(key, compute)

    read_scope = staticmethod(read_scope)

    def _loop_engine(self) -> Any:
        """The asyncio engine of this event loop: its connections belong to the loop that
        opened them, so another loop (a test's, a CLI's ``anyio.run``) gets its own, and
        the previous one is dropped."""
        loop = asyncio.get_running_loop()
        if self._async_loop is not loop:
            from sqlalchemy.ext.asyncio import create_async_engine

            if self._async_engine is not None:
                self._async_engine.sync_engine.dispose(close=False)
            self._async_engine = create_async_engine(self.url, **self._async_kwargs)
            self._async_loop = loop
        return self._async_engine

    async def close_async(self) -> None:
        """Close PostgreSQL's write connections, which belong to the event loop they were
        opened on: call from that loop, when its work is done, before :meth:`dispose`."""
        if self._async_engine is not None and self._async_loop is asyncio.get_running_loop():
            await self._async_engine.dispose()
            self._async_engine = self._async_loop = None

    def dispose(self) -> None:
        if self._async_engine is not None:
            # what close_async left (it was not called): dropped without an event loop
            self._async_engine.sync_engine.dispose(close=False)
            self._async_engine = self._async_loop = None
        if self._pg_reads is not None:
            self._pg_reads.close()
        if self._raw is not None:
            self._raw.close_all()
        self._cache.clear()
        if self._inline is not None:
            self._inline.dispose()
        self.engine.dispose()


class _RawConnections:
    """One raw sqlite3 connection per thread on a SQLite file, for :meth:`Database.fetch`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def current(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            _configure_sqlite(connection)
            self._local.connection = connection
            with self._lock:
                self._all.append(connection)
        return connection

    def close_all(self) -> None:
        with self._lock:
            connections, self._all = self._all, []
            self._local = threading.local()
        for connection in connections:
            connection.close()


def _is_file(url: sa.URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")


def _encode_json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def driver_sql(conn: sa.Connection, sql: str) -> str:
    """``sql`` written with ``?`` placeholders, in the connection's driver's paramstyle.
    The SQL may hold no other ``?`` and no ``%`` (psycopg would read them as markers)."""
    if conn.dialect.name == "sqlite":
        return sql
    if "%" in sql:
        raise ValueError("plain SQL for Database.fetch may not contain '%'")
    return sql.replace("?", "%s")


def _settled(conn: sa.Connection) -> bool:
    """Whether the connection is out of any transaction (and still usable)."""
    try:
        return not conn.connection.dbapi_connection.in_transaction  # type: ignore[union-attr]
    except Exception:
        return False


def _configure_sqlite(dbapi_connection: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _on_asyncio() -> bool:
    """Whether this runs on an asyncio event loop (group commit needs one; not on trio)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def timestamp_text(value: Any) -> str | None:
    """A timestamp column as :func:`fetch` returns it, in the contract's form
    (``2026-01-10T08:45:00Z``). SQLite hands back the stored text (``YYYY-MM-DD
    HH:MM:SS.ffffff``, UTC, see models.UTCDateTime), PostgreSQL an aware datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        return f"{value[:10]}T{value[11:19]}Z"
    return isoformat_z(value)


def json_value(value: Any) -> Any:
    """A JSON column as :func:`fetch` returns it: text on SQLite, decoded on PostgreSQL."""
    if isinstance(value, str | bytes):
        return msgspec.json.decode(value)
    return value


def open_database(settings: Settings, *, migrate: bool = True) -> Database:
    """The database of ``settings``, its home folder made (mode 0700), its schema migrated."""
    from relaykit.storage.schema import upgrade  # schema imports this module

    ensure_home(settings.home)
    database = Database(settings.database_url, read_cache=settings.read_cache)
    if migrate:
        upgrade(database)
    return database


def ensure_home(home: Path) -> None:
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
