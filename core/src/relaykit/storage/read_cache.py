"""The read cache (SQLite): results kept until the next commit to the database by anyone.

SQLite tells each connection whether another has committed since it last asked (``PRAGMA
data_version``, https://www.sqlite.org/pragma.html#pragma_data_version), so checking costs
one pragma on the thread's own read connection, which never writes. Any commit (a create, a
delivery attempt, a token revoked from the CLI, another process's write) empties the cache:
it serves repeated reads of an unchanged database, and never a stale one.

Off (every call computes) on PostgreSQL, on an in-memory SQLite and with
``RELAYKIT_READ_CACHE=0``: nothing in one node can know that another node committed
without asking the server.

Each lookup of an enabled cache counts as a hit or a miss (``relaykit_read_cache_total``);
an off cache counts nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterator
from typing import Any, TypeVar, cast

from relaykit.metrics import READ_CACHE_HIT, READ_CACHE_MISS

T = TypeVar("T")

#: Results kept per thread; the oldest goes first past this.
READ_CACHE_ENTRIES = 256

#: Inside ReadCache.scope: the data version the scope's first cached read saw.
_SCOPE: contextvars.ContextVar[list[int | None] | None] = contextvars.ContextVar(
    "relaykit_read_scope", default=None
)


class _State(threading.local):
    version: int = -1
    entries: OrderedDict[Hashable, Any]

    def __init__(self) -> None:
        self.entries = OrderedDict()


class ReadCache:
    """Results by key, per thread, valid until the next commit.

    ``connection`` gives the calling thread's own read connection, the one the cached
    computations read through (``Database.fetch``); ``None`` turns the cache off.
    """

    def __init__(self, connection: Callable[[], sqlite3.Connection] | None) -> None:
        self._connection = connection
        self._state = _State()

    @property
    def enabled(self) -> bool:
        return self._connection is not None

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> T:
        """``await compute()``, or what it gave before for ``key`` if nothing has been
        committed since. ``compute`` must read through ``Database.fetch`` and return
        something callers do not mutate."""
        if self._connection is None:
            return await compute()
        state = self._state
        scope = _SCOPE.get()
        if scope is not None and scope[0] is not None:
            version = scope[0]
        else:
            version = self._connection().execute("PRAGMA data_version").fetchone()[0]
            if scope is not None:
                scope[0] = version
        if version != state.version:
            state.entries.clear()
            state.version = version
        try:
            value = cast(T, state.entries[key])
        except KeyError:
            pass
        else:
            READ_CACHE_HIT.inc()
            return value
        READ_CACHE_MISS.inc()
        value = await compute()
        # The version was read before compute() ran: a commit racing it makes the next call
        # miss, and a value computed while another call moved the version on is not kept.
        if state.version == version:
            state.entries[key] = value
            if len(state.entries) > READ_CACHE_ENTRIES:
                state.entries.popitem(last=False)
        return value

    def clear(self) -> None:
        """Forget this thread's entries (the handle is being closed)."""
        self._state = _State()


@contextlib.contextmanager
def read_scope() -> Iterator[None]:
    """One check for commits per block (one API request): within it, :meth:`ReadCache.get`
    asks SQLite whether anything was committed at its first call only, and trusts that
    answer for the rest of the block, as one request reads one snapshot. A write inside the
    block (:func:`forget_scope_version`) makes the next cached read ask again."""
    token = _SCOPE.set([None])
    try:
        yield
    finally:
        _SCOPE.reset(token)


def forget_scope_version() -> None:
    """What the current scope read so far is no longer current (it is writing)."""
    scope = _SCOPE.get()
    if scope is not None:
        scope[0] = None
