"""The database handle: one engine, one transaction per unit of work.

Data access is synchronous SQLAlchemy Core; async callers hop to a worker thread once per
unit of work (:meth:`Database.run_read` / :meth:`Database.run_write`) instead of once per
statement, which is what makes the async ORM over aiosqlite slow.

On SQLite, pysqlite's own transaction handling is switched off so that relaykit emits the
``BEGIN`` itself: reads use a deferred ``BEGIN``; writes use ``BEGIN IMMEDIATE``, which takes
the write lock up front, so two concurrent writers queue on ``busy_timeout`` instead of one
failing with "database is locked" when it tries to upgrade a read lock
(https://docs.sqlalchemy.org/en/20/dialects/sqlite.html#serializable-isolation-savepoints-transactional-ddl).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import anyio.to_thread
import msgspec
import sqlalchemy as sa

from relaykit.settings import Settings

T = TypeVar("T")
P = ParamSpec("P")

_WRITE_OPTION = "relaykit_write"
SQLITE_BUSY_TIMEOUT_MS = 30_000


class WriteWouldWait(Exception):
    """An inline write found the write lock taken: nothing was done; run it in a thread."""


_INLINE_WRITE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "relaykit_inline_write", default=False
)
#: Inside Database.read_scope: the data version the scope's first cached read saw.
_READ_SCOPE: contextvars.ContextVar[list[int | None] | None] = contextvars.ContextVar(
    "relaykit_read_scope", default=None
)

#: Results :meth:`Database.cached` keeps per thread; the oldest goes first past this.
READ_CACHE_ENTRIES = 256


class _Reader(threading.local):
    """One thread's raw SQLite connection, and what it has cached at which data version."""

    connection: sqlite3.Connection | None = None
    version: int = -1
    cache: OrderedDict[Hashable, Any]

    def __init__(self) -> None:
        self.cache = OrderedDict()


class Database:
    def __init__(self, url: str, *, pool_size: int = 20, read_cache: bool = True) -> None:
        self.url = sa.engine.make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            if self.url.database and self.url.database != ":memory:":
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False}
            kwargs["pool_size"] = pool_size
        else:
            kwargs["pool_size"] = pool_size
            kwargs["pool_pre_ping"] = True
        # msgspec reads and writes the JSON columns: several times faster than the json
        # module on the list path (25 rows, four JSON columns each).
        kwargs["json_serializer"] = lambda value: msgspec.json.encode(value).decode()
        kwargs["json_deserializer"] = msgspec.json.decode
        self.engine = sa.create_engine(self.url, **kwargs)
        self._write_engine = self.engine.execution_options(**{_WRITE_OPTION: True})
        # Inline writes (Database.inline_writes) use one connection of their own, kept open
        # and used only under the write lock, whose busy timeout is zero: it never waits.
        self._inline_engine: sa.Engine | None = None
        self._inline_connection: sa.Connection | None = None
        if self.is_sqlite:
            self._inline_engine = sa.create_engine(
                self.url,
                connect_args={"check_same_thread": False},
                poolclass=sa.pool.StaticPool,
                json_serializer=kwargs["json_serializer"],
                json_deserializer=kwargs["json_deserializer"],
            ).execution_options(**{_WRITE_OPTION: True})
        # SQLite has one writer at a time. Writers of this process queue on this lock instead
        # of on SQLite's busy handler, which sleeps in steps of 1 to 100 ms while it waits:
        # under concurrent writes that sleeping, not the writes, was the cost (see
        # bench/verification.py). Other processes still queue on busy_timeout.
        self._sqlite_write_lock = threading.Lock()
        self._write_lock = self._sqlite_write_lock if self.is_sqlite else contextlib.nullcontext()
        # SQLite reads take a fraction of a millisecond and, in WAL mode, never wait for a
        # lock: async callers run them inline instead of hopping to a worker thread, whose
        # cost under load (thread switches, the GIL passed back and forth) was several times
        # the read's own (docs/performance.md). Writes, which may wait for another process's
        # lock, and every query on a server database still go to a thread.
        self.inline_reads = self.is_sqlite
        #: Single-transaction writes may run inline (Database.inline_writes): SQLite only.
        self.inline_writes_allowed = self.is_sqlite
        # fetch(): one raw DB-API connection per thread on a SQLite file (see fetch).
        self._raw = _Reader()
        self._raw_connections: list[sqlite3.Connection] = []
        self._raw_lock = threading.Lock()
        self._raw_sqlite = self.is_sqlite and self.url.database not in (None, "", ":memory:")
        self.read_cache = read_cache and self._raw_sqlite
        if self.is_sqlite:
            self._install_sqlite_hooks()

    def _install_sqlite_hooks(self) -> None:
        @sa.event.listens_for(self.engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            _configure_sqlite(dbapi_connection)

        def _on_begin(conn: sa.Connection) -> None:
            write = conn.get_execution_options().get(_WRITE_OPTION, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        sa.event.listen(self.engine, "begin", _on_begin)
        assert self._inline_engine is not None

        @sa.event.listens_for(self._inline_engine, "connect")
        def _on_inline_connect(dbapi_connection: Any, _record: Any) -> None:
            _configure_sqlite(dbapi_connection)
            dbapi_connection.execute("PRAGMA busy_timeout=0")

        sa.event.listen(self._inline_engine, "begin", _on_begin)

    def read(
        self, fn: Callable[Concatenate[sa.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        with self.engine.begin() as conn:
            return fn(conn, *args, **kwargs)

    def write(
        self, fn: Callable[Concatenate[sa.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        scope = _READ_SCOPE.get()
        if scope is not None:
            scope[0] = None  # what this scope read before its own write is no longer current
        try:
            if _INLINE_WRITE.get():
                return self._write_without_waiting(fn, *args, **kwargs)
            with self._write_lock, self._write_engine.begin() as conn:
                return fn(conn, *args, **kwargs)
        finally:
            if scope is not None:
                scope[0] = None  # nor what it read while the write was under way

    @contextlib.contextmanager
    def inline_writes(self) -> Iterator[None]:
        """Within this block, :meth:`write` never waits for the write lock: if this process
        or another holds it, the write raises :class:`WriteWouldWait` before doing anything.

        The server runs single-transaction service calls this way on SQLite (see
        ``relaykit_server.requests.write_call``): on the event loop while the lock is free,
        which is nearly always, and in a worker thread only when it is not. A SQLite write
        takes about a tenth of a millisecond; the hop to a thread and back cost several
        times that under load (docs/performance.md).
        """
        token = _INLINE_WRITE.set(True)
        try:
            yield
        finally:
            _INLINE_WRITE.reset(token)

    def _write_without_waiting(
        self, fn: Callable[Concatenate[sa.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        if self._inline_engine is None:
            raise WriteWouldWait  # not SQLite: nothing runs inline
        if not self._sqlite_write_lock.acquire(blocking=False):
            raise WriteWouldWait
        try:
            conn = self._inline_connection
            if conn is None or conn.closed or conn.invalidated:
                conn = self._inline_connection = self._inline_engine.connect()
            try:
                transaction = conn.begin()  # BEGIN IMMEDIATE: SQLite's write lock
            except sa.exc.OperationalError as error:
                # A failed begin leaves SQLAlchemy's connection half in a begin: start the
                # next inline write on a fresh one (this is the rare, contended case).
                conn.close()
                self._inline_connection = None
                if "locked" in str(error.orig) or "busy" in str(error.orig):
                    raise WriteWouldWait from None  # another process is writing
                raise
            try:
                with transaction:
                    return fn(conn, *args, **kwargs)
            except BaseException:
                if not _settled(conn):
                    # A COMMIT that failed (disk full, I/O error) can leave SQLite inside
                    # the transaction, holding the write lock: drop that connection.
                    conn.invalidate()
                    conn.close()
                    self._inline_connection = None
                raise
        finally:
            self._sqlite_write_lock.release()

    async def run_read(
        self, fn: Callable[Concatenate[sa.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        if self.inline_reads:
            return self.read(fn, *args, **kwargs)
        return await anyio.to_thread.run_sync(lambda: self.read(fn, *args, **kwargs))

    async def run_write(
        self, fn: Callable[Concatenate[sa.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """:meth:`write` for async callers: inline on SQLite while the write lock is free
        (:meth:`inline_writes`), else in a worker thread."""
        return await self.call_inline_first(functools.partial(self.write, fn, *args, **kwargs))

    async def call_inline_first(self, call: Callable[[], T], *, inline: bool = True) -> T:
        """Run ``call``, a synchronous call whose writes through this handle are one
        transaction: on the event loop (:meth:`inline_writes`) where that is allowed (SQLite,
        and ``inline``) and the write lock is free, else in a worker thread. A call that
        finds the lock taken has not written yet, so it runs again in the thread."""
        if inline and self.inline_writes_allowed:
            try:
                with self.inline_writes():
                    return call()
            except WriteWouldWait:
                pass
        return await anyio.to_thread.run_sync(call)

    def fetch(self, sql: str, params: Sequence[Any] = (), *, cache: bool = False) -> list[Any]:
        """The rows of one read-only statement, as the driver returns them (tuples).

        The hot reads (the token check, the integration list and get) use this instead of
        SQLAlchemy Core: SQLAlchemy's statement caching and per-row type processing cost
        several times the query itself on SQLite (docs/performance.md). ``sql`` is plain SQL
        with ``?`` placeholders, written to run on SQLite and PostgreSQL alike; values come
        back raw, so callers read timestamps and JSON columns with :func:`timestamp_text` and
        :func:`json_value`.

        On a SQLite file each thread keeps one connection of its own (autocommit, WAL: a
        read never waits for a writer); elsewhere a pooled connection runs it. ``cache``: reuse
        the rows until the next commit (:meth:`cached`).
        """
        if cache:
            return self.cached(("fetch", sql, *params), lambda: self.fetch(sql, params))
        return self.fetch_together([(sql, params)])[0]

    def fetch_together(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        """:meth:`fetch` for several statements that must see one snapshot (a page and its
        total): one read transaction, repeatable read on PostgreSQL."""
        if self._raw_sqlite:
            connection = self._raw.connection or self._open_raw()
            if len(statements) == 1:
                sql, params = statements[0]
                return [connection.execute(sql, params).fetchall()]
            connection.execute("BEGIN")
            try:
                return [connection.execute(sql, params).fetchall() for sql, params in statements]
            finally:
                connection.execute("COMMIT")
        options: dict[str, Any] = {} if self.is_sqlite else {"isolation_level": "REPEATABLE READ"}
        with self.engine.connect().execution_options(**options) as conn, conn.begin():
            return [
                list(conn.exec_driver_sql(self.driver_sql(sql), tuple(params)).all())
                for sql, params in statements
            ]

    def driver_sql(self, sql: str) -> str:
        """``sql`` written with ``?`` placeholders, in this database driver's paramstyle.
        The SQL may hold no other ``?`` and no ``%`` (psycopg would read them as markers)."""
        if self.is_sqlite:
            return sql
        if "%" in sql:
            raise ValueError("plain SQL for Database.fetch may not contain '%'")
        return sql.replace("?", "%s")

    def cached(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()``, or what it returned before for ``key`` if nothing has been committed
        to the database since, by any connection of any process.

        SQLite tells each connection whether another has committed since it last asked
        (``PRAGMA data_version``, https://www.sqlite.org/pragma.html#pragma_data_version), so
        the check is one pragma on this thread's own read connection, which never writes. Any
        commit (a create, a delivery attempt, a token revoked from the CLI) empties the
        cache: it serves repeated reads of an unchanged database, and can never serve a
        stale one. ``compute`` must read through :meth:`fetch` (the same connection) and
        return something callers do not mutate. Off (``compute()`` every time) on
        PostgreSQL, on an in-memory SQLite, and with ``RELAYKIT_READ_CACHE=0``.
        """
        if not self.read_cache:
            return compute()
        reader = self._raw
        connection = reader.connection or self._open_raw()
        scope = _READ_SCOPE.get()
        if scope is not None and scope[0] is not None:
            version = scope[0]
        else:
            version = connection.execute("PRAGMA data_version").fetchone()[0]
            if scope is not None:
                scope[0] = version
        if version != reader.version:
            reader.cache.clear()
            reader.version = version
        try:
            return cast(T, reader.cache[key])
        except KeyError:
            pass
        # The version was read before compute() runs, so a commit racing it makes the next
        # call miss: the cache may recompute too often, never serve too old.
        value = compute()
        reader.cache[key] = value
        if len(reader.cache) > READ_CACHE_ENTRIES:
            reader.cache.popitem(last=False)
        return value

    @contextlib.contextmanager
    def read_scope(self) -> Iterator[None]:
        """One check for commits per block (one API request): within it, :meth:`cached`
        asks SQLite whether anything was committed at its first call only, and trusts that
        answer for the rest of the block, as one request reads one snapshot. A write
        through this handle inside the block makes the next cached read ask again."""
        token = _READ_SCOPE.set([None])
        try:
            yield
        finally:
            _READ_SCOPE.reset(token)

    async def run_fetch(
        self, sql: str, params: Sequence[Any] = (), *, cache: bool = False
    ) -> list[Any]:
        """:meth:`fetch` for async callers: inline on SQLite, in a worker thread elsewhere."""
        if self.inline_reads:
            return self.fetch(sql, params, cache=cache)
        return await anyio.to_thread.run_sync(lambda: self.fetch(sql, params, cache=cache))

    def _open_raw(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            str(self.url.database), isolation_level=None, check_same_thread=False
        )
        _configure_sqlite(connection)
        self._raw.connection = connection
        with self._raw_lock:
            self._raw_connections.append(connection)
        return connection

    def dispose(self) -> None:
        with self._raw_lock:
            for connection in self._raw_connections:
                connection.close()
            self._raw_connections.clear()
        self._raw = _Reader()
        with self._sqlite_write_lock:
            if self._inline_connection is not None:
                self._inline_connection.close()
                self._inline_connection = None
        if self._inline_engine is not None:
            self._inline_engine.dispose()
        self.engine.dispose()


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


def timestamp_text(value: Any) -> str | None:
    """A timestamp column as :func:`fetch` returns it, in the contract's form
    (``2026-01-10T08:45:00Z``). SQLite hands back the stored text (``YYYY-MM-DD
    HH:MM:SS.ffffff``, UTC, see models.UTCDateTime), PostgreSQL an aware datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        return f"{value[:10]}T{value[11:19]}Z"
    from relaykit.ids import isoformat_z

    return isoformat_z(value)


def json_value(value: Any) -> Any:
    """A JSON column as :func:`fetch` returns it: text on SQLite, decoded on PostgreSQL."""
    if isinstance(value, str | bytes):
        return msgspec.json.decode(value)
    return value


def open_database(settings: Settings, *, migrate: bool = True) -> Database:
    """The database of ``settings``, its home folder made (mode 0700), its schema migrated."""
    from relaykit.storage.schema import upgrade

    ensure_home(settings.home)
    database = Database(settings.database_url, read_cache=settings.read_cache)
    if migrate:
        upgrade(database)
    return database


def ensure_home(home: Path) -> None:
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
