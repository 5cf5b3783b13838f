"""SQLite writes on the event loop while the write lock is free.

A SQLite write is quick; the hop to a worker thread and back cost more than the write
under load (docs/performance.md has the figures). So :meth:`Database.transaction`
first offers a transaction to :class:`InlineWriter`, which runs it on the calling thread
(the event loop) if, and only if, it can start at once: this process's write lock is free
and SQLite grants ``BEGIN IMMEDIATE`` on a kept connection whose busy timeout is zero. When
either is taken it raises :class:`WriteWouldWait` *before* calling the transaction's
function, and the database runs the function in a worker thread instead, where it queues.
So a function runs once, whichever way it goes, and the loop never waits for a lock.

**Group commit.** :class:`GroupCommit` gathers the transactions that requests start in the
same turn of the event loop and runs them in one SQLite transaction, each in a savepoint of
its own (a function that raises rolls back its own work only, and its caller gets the
error), with one ``COMMIT`` for all. Every caller waits for that commit before it is
answered, so an answer still means "committed", as in PostgreSQL's own group commit; what
the batch saves is the per-transaction cost (``BEGIN IMMEDIATE``, the commit, and the log
pages written once for the whole batch rather than once per transaction).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Callable
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

    def run_many(self, fns: list[Callable[[sa.Connection], Any]]) -> list[tuple[bool, Any]]:
        """Each of ``fns`` in a savepoint of its own, all in one write transaction committed
        before this returns, now, or :class:`WriteWouldWait` (then none has run). For each,
        ``(True, its result)`` or ``(False, the exception it raised)``; an error of the
        transaction itself (the begin, the commit) is raised, and then nothing is kept."""
        if len(fns) == 1:
            try:
                return [(True, self.run(fns[0]))]
            except WriteWouldWait:
                raise
            except Exception as error:
                return [(False, error)]
        return self.run(_savepoints, fns)

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


def _savepoints(conn: sa.Connection, fns: list[Callable[[sa.Connection], Any]]) -> list[Any]:
    raw = conn.connection.dbapi_connection
    assert raw is not None
    outcomes: list[tuple[bool, Any]] = []
    for fn in fns:
        raw.execute("SAVEPOINT relaykit_group")
        try:
            value = fn(conn)
        except Exception as error:
            raw.execute("ROLLBACK TO relaykit_group")
            raw.execute("RELEASE relaykit_group")
            outcomes.append((False, error))
        else:
            raw.execute("RELEASE relaykit_group")
            outcomes.append((True, value))
    return outcomes


class GroupCommit:
    """The write transactions started in one turn of an asyncio event loop, run together
    (:meth:`InlineWriter.run_many`) at the end of that turn. When the write lock is taken,
    each runs alone through ``in_thread``, as a single transaction would."""

    def __init__(
        self,
        writer: InlineWriter,
        in_thread: Callable[[Callable[[sa.Connection], Any]], Awaitable[Any]],
    ) -> None:
        self._writer = writer
        self._in_thread = in_thread
        self._pending: dict[asyncio.AbstractEventLoop, list[tuple[Any, asyncio.Future[Any]]]] = {}

    async def run(self, fn: Callable[[sa.Connection], T]) -> T:
        """``fn(conn)`` in a write transaction, committed before this returns. If the
        awaiting task is cancelled, ``fn`` still runs (and commits) with its batch."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        # a failure nobody awaits any more (the caller was cancelled) is not logged by asyncio
        future.add_done_callback(_retrieved)
        # The batch runs in a loop callback, in the context of whichever request opened it:
        # each function runs in its own caller's context (the audit actor, the request id,
        # the log fields of relaykit.context).
        context = contextvars.copy_context()

        def in_context(conn: sa.Connection) -> T:
            return context.run(fn, conn)

        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            loop.call_soon(self._flush, loop)
        pending.append((in_context, future))
        return await asyncio.shield(future)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._pending.pop(loop, [])
        if not batch:
            return
        try:
            outcomes = self._writer.run_many([fn for fn, _ in batch])
        except WriteWouldWait:
            for fn, future in batch:
                loop.create_task(self._alone(fn, future))
            return
        except BaseException as error:  # the begin or the commit failed: nothing is kept
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    async def _alone(self, fn: Callable[[sa.Connection], Any], future: asyncio.Future[Any]) -> None:
        try:
            value = await self._in_thread(fn)
        except BaseException as error:
            if not future.done():
                future.set_exception(error)
            if not isinstance(error, Exception):
                raise
        else:
            if not future.done():
                future.set_result(value)


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
