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
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import anyio.to_thread
import msgspec
import sqlalchemy as sa

from relaykit.settings import Settings

T = TypeVar("T")
P = ParamSpec("P")

_WRITE_OPTION = "relaykit_write"
SQLITE_BUSY_TIMEOUT_MS = 30_000


class Database:
    def __init__(self, url: str, *, pool_size: int = 20) -> None:
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
        # SQLite has one writer at a time. Writers of this process queue on this lock instead
        # of on SQLite's busy handler, which sleeps in steps of 1 to 100 ms while it waits:
        # under concurrent writes that sleeping, not the writes, was the cost (see
        # bench/verification.py). Other processes still queue on busy_timeout.
        self._write_lock = threading.Lock() if self.is_sqlite else contextlib.nullcontext()
        # SQLite reads take a fraction of a millisecond and, in WAL mode, never wait for a
        # lock: async callers run them inline instead of hopping to a worker thread, whose
        # cost under load (thread switches, the GIL passed back and forth) was several times
        # the read's own (docs/performance.md). Writes, which may wait for another process's
        # lock, and every query on a server database still go to a thread.
        self.inline_reads = self.is_sqlite
        if self.is_sqlite:
            self._install_sqlite_hooks()

    def _install_sqlite_hooks(self) -> None:
        @sa.event.listens_for(self.engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.close()

        @sa.event.listens_for(self.engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            write = conn.get_execution_options().get(_WRITE_OPTION, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    def read(
        self, fn: Callable[Concatenate[sa.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        with self.engine.begin() as conn:
            return fn(conn, *args, **kwargs)

    def write(
        self, fn: Callable[Concatenate[sa.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        with self._write_lock, self._write_engine.begin() as conn:
            return fn(conn, *args, **kwargs)

    async def run_read(
        self, fn: Callable[Concatenate[sa.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        if self.inline_reads:
            return self.read(fn, *args, **kwargs)
        return await anyio.to_thread.run_sync(lambda: self.read(fn, *args, **kwargs))

    async def run_write(
        self, fn: Callable[Concatenate[sa.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        return await anyio.to_thread.run_sync(lambda: self.write(fn, *args, **kwargs))

    def dispose(self) -> None:
        self.engine.dispose()


def open_database(settings: Settings, *, migrate: bool = True) -> Database:
    """The database of ``settings``, its home folder made (mode 0700), its schema migrated."""
    from relaykit.storage.schema import upgrade

    ensure_home(settings.home)
    database = Database(settings.database_url)
    if migrate:
        upgrade(database)
    return database


def ensure_home(home: Path) -> None:
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
