"""PostgreSQL's hot reads on the event loop (:meth:`Database.fetch` and ``fetch_together``).

Through SQLAlchemy in a worker thread, a list cost a thread hop, a ping on every checkout
of the pool, ``BEGIN``, two queries and ``COMMIT``: six round trips and a hop for what is
one snapshot of two queries, about 1.6 ms with one client (docs/performance.md). Here each
event loop keeps its own psycopg ``AsyncConnection``\\ s (autocommit, so a single query is
one round trip, and prepared by psycopg after a few runs); several statements that must see
one snapshot run in one repeatable-read, read-only transaction sent as one pipeline.

A connection that fails (the server restarted, the network dropped) is closed and the
statements are sent once more on a new one, which stands in for the pool's ping. Errors
are SQLAlchemy's (``OperationalError``, …), as through the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import psycopg
import psycopg.types.string
import sqlalchemy as sa


class PgReads:
    def __init__(self, url: sa.URL, dialect: sa.Dialect, *, max_connections: int) -> None:
        args = url.translate_connect_args(username="user", database="dbname")
        args.update({key: value for key, value in url.query.items() if isinstance(value, str)})
        self._conninfo = psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in args.items()})
        self._dialect = dialect
        self._max = max_connections
        self._pools: dict[asyncio.AbstractEventLoop, _LoopPool] = {}

    async def fetch_together(
        self, statements: Sequence[tuple[str, Sequence[Any]]]
    ) -> list[list[Any]]:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            for ended in [other for other in self._pools if other.is_closed()]:
                self._pools.pop(ended).close()  # a finished anyio.run's connections
            pool = self._pools[loop] = _LoopPool(self._conninfo, self._max)
        for retry in (False, True):
            conn = await pool.take()
            try:
                found = await _run(conn, statements)
            except psycopg.OperationalError as error:
                broken = conn.closed or conn.broken
                pool.discard(conn)
                if retry or not broken:
                    raise self._wrapped(statements, error) from error
                continue  # a broken connection: once more, on a new one
            except psycopg.Error as error:
                if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                    pool.give_back(conn)
                else:  # left inside a failed transaction
                    pool.discard(conn)
                raise self._wrapped(statements, error) from error
            except BaseException:
                pool.discard(conn)  # cancelled mid-pipeline: its state is unknown
                raise
            pool.give_back(conn)
            return found
        raise AssertionError("unreachable")

    def _wrapped(
        self, statements: Sequence[tuple[str, Sequence[Any]]], error: psycopg.Error
    ) -> sa.exc.StatementError:
        sql, params = statements[0]
        return sa.exc.DBAPIError.instance(
            sql, list(params), error, psycopg.Error, dialect=self._dialect
        )

    def close(self) -> None:
        """Close every connection now (synchronously: libpq's own close)."""
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.close()


async def _run(
    conn: psycopg.AsyncConnection[Any], statements: Sequence[tuple[str, Sequence[Any]]]
) -> list[list[Any]]:
    if len(statements) == 1:
        sql, params = statements[0]
        cursor = await conn.execute(_driver(sql), params)
        return [await cursor.fetchall()]
    # BEGIN, the statements and COMMIT go out as one pipeline: one round trip
    async with conn.pipeline() as pipeline:
        await conn.execute(_BEGIN)
        cursors = [await conn.execute(_driver(sql), params) for sql, params in statements]
        await conn.execute(_COMMIT)
        await pipeline.sync()
        return [await cursor.fetchall() for cursor in cursors]


_BEGIN = b"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
_COMMIT = b"COMMIT"


def _driver(sql: str) -> Any:
    """``?`` placeholders as psycopg's; the SQL holds no other ``?`` and no ``%``."""
    return sql.replace("?", "%s")


class _LoopPool:
    """One event loop's connections: idle ones kept, at most ``limit`` in use at once."""

    def __init__(self, conninfo: str, limit: int) -> None:
        self._conninfo = conninfo
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._slots = asyncio.Semaphore(limit)

    async def take(self) -> psycopg.AsyncConnection[Any]:
        await self._slots.acquire()
        if self._idle:
            return self._idle.pop()
        try:
            conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        except BaseException:
            self._slots.release()
            raise
        # JSON columns as their text, as SQLite hands them back: the callers decode them
        # (json_value, msgspec), and a row of text is hashable, so the integration views
        # kept by their row's values (IntegrationService._view) serve PostgreSQL too
        for name in ("json", "jsonb"):
            conn.adapters.register_loader(name, psycopg.types.string.TextLoader)
        return conn

    def give_back(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._idle.append(conn)
        self._slots.release()

    def discard(self, conn: psycopg.AsyncConnection[Any]) -> None:
        _close(conn)
        self._slots.release()

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            _close(conn)


def _close(conn: psycopg.AsyncConnection[Any]) -> None:
    with contextlib.suppress(Exception):
        conn.pgconn.finish()
