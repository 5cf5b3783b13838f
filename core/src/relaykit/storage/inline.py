"""SQLite writes on the event loop while the write lock is free.

A SQLite write is quick; the hop to a worker thread and back cost more than the write
under load (docs/performance.md has the figures). So :meth:`Database.transaction`
first offers a transaction to :class:`InlineWriter`, which runs it on the calling thread
(the event loop) if, and only if, it can start at once: this process's write lock is free
and SQLite grants ``BEGIN IMMEDIATE`` on a kept connection whose busy timeout is zero. When
either is taken it raises :class:`WriteWouldWait` *before* calling the transaction's
function, and the database runs the function in a worker thread instead, where it queues.
So a function runs once, whichever way it goes, and the loop never waits for a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa

T = TypeVar("T")


class WriteWouldWait(Exception):
    """The write lock is taken: nothing was done; run the transaction where it may wait."""


class InlineWriter:
    """One kept connection, used only under ``lock`` and never waiting for SQLite's lock.

    ``lock`` is the lock every writer of this process (inline or in a thread) takes, so
    writers of one process queue on it rather than on SQLite's busy handler, which sleeps
    in 1 to 100 ms steps.
    """

    def __init__(self, engine: sa.Engine, lock: threading.Lock) -> None:
        self._engine = engine
        self._lock = lock
        self._connection: sa.Connection | None = None

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(conn, *args)`` in one write transaction, now, or :class:`WriteWouldWait`."""
        if not self._lock.acquire(blocking=False):
            raise WriteWouldWait
        try:
            conn = self._connection
            if conn is None or conn.closed or conn.invalidated:
                conn = self._connection = self._engine.connect()
            try:
                transaction = conn.begin()  # BEGIN IMMEDIATE: SQLite's write lock
            except sa.exc.OperationalError as error:
                # A failed begin leaves SQLAlchemy's connection half in a begin: start the
                # next inline write on a fresh one (this is the rare, contended case).
                conn.close()
                self._connection = None
                if "locked" in str(error.orig) or "busy" in str(error.orig):
                    raise WriteWouldWait from None  # another process is writing
                raise
            try:
                with transaction:
                    return fn(conn, *args)
            except BaseException:
                if not _settled(conn):
                    # A COMMIT that failed (disk full, I/O error) can leave SQLite inside
                    # the transaction, holding the write lock: drop that connection.
                    conn.invalidate()
                    conn.close()
                    self._connection = None
                raise
        finally:
            self._lock.release()

    def dispose(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
        self._engine.dispose()


def _settled(conn: sa.Connection) -> bool:
    """Whether the connection is out of any transaction (and still usable)."""
    try:
        return not conn.connection.dbapi_connection.in_transaction  # type: ignore[union-attr]
    except Exception:
        return False
