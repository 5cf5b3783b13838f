"""Readiness: whether this process can do its work now, check by check (``GET /ready``).

Four checks, run together, each cut at :data:`CHECK_TIMEOUT_SECONDS` (a hung database or
key service makes its check fail, never the probe hang):

* ``database``: a trivial query answers;
* ``schema``: the database's migration revision is the newest the installed code knows
  (``relaykit db upgrade`` fixes it);
* ``key_provider``: a random probe data key is wrapped under the database's primary key
  (read again first: another node may have rotated) and unwrapped back, and every key whose
  last use failed in this process (a key the keyring lacks, a KMS key access is denied to)
  is probed again (no credentials are touched);
* ``worker``: the verification worker's heartbeat is fresh, i.e. its row in
  ``worker_heartbeats`` beat within ``RELAYKIT_WORKER_HEARTBEAT`` seconds: this process's own
  worker when it runs one (``RELAYKIT_EMBEDDED_WORKER``), else any worker's: a ``relaykit
  worker``, or, in a process of ``relaykit serve --workers N`` that does not hold the worker
  lock (relaykit.worker_lock), the one another of its processes runs.

A failing check carries an ``error`` for the operator: never a secret and never tenant data
(an exception from a key provider is reduced to its type name; it may carry key material).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import math
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import anyio
import anyio.to_thread
import msgspec

from relaykit.ids import utcnow
from relaykit.sealing import Keys, runs_in_process
from relaykit.storage import heartbeats
from relaykit.storage.database import Database
from relaykit.storage.schema import current_revision, head_revision

T = TypeVar("T")

#: Seconds each check may take before it counts as failed.
CHECK_TIMEOUT_SECONDS = 2.0
#: Seconds a passing key-provider check is reused (a failing one is retried every time).
KEY_CHECK_TTL_SECONDS = 5.0
#: The associated data the key provider's probe key is wrapped with (no blob uses it).
PROBE_ASSOCIATED_DATA = b"relaykit/readiness-probe/v1"
CHECK_NAMES = ("database", "schema", "key_provider", "worker")


class ReadinessCheck(msgspec.Struct, frozen=True, omit_defaults=True):
    """One check's answer: ``ok``, and when it failed, why (``error``)."""

    ok: bool
    error: str | None = None


class ReadinessChecks(msgspec.Struct, frozen=True):
    database: ReadinessCheck
    schema: ReadinessCheck
    key_provider: ReadinessCheck
    worker: ReadinessCheck


class Readiness(msgspec.Struct, frozen=True):
    """What ``/ready`` reports: ``ready`` when every check passed, else ``not_ready``."""

    status: Literal["ready", "not_ready"]
    checks: ReadinessChecks

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    @property
    def failing(self) -> list[str]:
        """The names of the failing checks, in :data:`CHECK_NAMES` order."""
        return [name for name in CHECK_NAMES if not getattr(self.checks, name).ok]


@functools.cache
def _head() -> str:
    return head_revision()  # reads the migration scripts: once per process


def _probe(key_provider: Keys) -> bool:
    data_key = secrets.token_bytes(32)
    key_id, wrapped = key_provider.wrap(data_key, PROBE_ASSOCIATED_DATA)
    return secrets.compare_digest(
        key_provider.unwrap(key_id, wrapped, PROBE_ASSOCIATED_DATA), data_key
    )


class ReadinessProbe:
    """The checks of one process (one per :class:`relaykit.services.Services`).

    Args:
        worker_owner: the owner name of this process's worker, or ``None`` when the process
            runs none (then any worker's fresh heartbeat will do); or a function saying which
            at each check (a process of ``serve --workers N`` runs its worker only while it
            holds the worker lock).
        heartbeat_interval: ``RELAYKIT_WORKER_HEARTBEAT``.
    """

    #: Threads the checks' blocking calls may hold at once, hung ones included. A timed-out
    #: check abandons its thread (it cannot be interrupted) and anyio then stops counting
    #: it, so the probe counts them itself: with this many still running, a check fails at
    #: once instead of starting another, and a hung database cannot take the thread pool.
    THREADS = 4

    def __init__(
        self,
        database: Database,
        key_provider: Keys,
        *,
        worker_owner: str | Callable[[], str | None] | None,
        heartbeat_interval: float,
    ) -> None:
        self.database = database
        self.key_provider = key_provider
        self.worker_owner = worker_owner
        self.heartbeat_interval = heartbeat_interval
        self._key_ok_until = -math.inf  # monotonic time a good key check holds until
        self._key_failures_seen = 0  # the key set's failure count at the last good check
        self._running = 0  # threads started by checks and not yet returned, hung or not
        self._running_lock = threading.Lock()

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker thread that a cancelled (timed-out) caller abandons;
        refused (``TimeoutError``) while :data:`THREADS` earlier ones are still running."""
        with self._running_lock:
            if self._running >= self.THREADS:
                raise TimeoutError("earlier checks are still waiting for an answer")
            self._running += 1

        started = dropped = False

        def run() -> T:
            nonlocal started
            with self._running_lock:
                if dropped:  # the check timed out before this thread picked it up
                    raise TimeoutError("the check was abandoned before it started")
                started = True
            try:
                return fn(*args)
            finally:
                with self._running_lock:
                    self._running -= 1

        try:
            return await anyio.to_thread.run_sync(run, abandon_on_cancel=True)
        except BaseException:
            with self._running_lock:
                if not started:  # it will never run: it no longer counts
                    dropped = True
                    self._running -= 1
            raise

    async def check_database(self) -> ReadinessCheck:
        await self._in_thread(self.database.read_blocking, heartbeats.ping)
        return ReadinessCheck(ok=True)

    async def check_schema(self) -> ReadinessCheck:
        current = await self._in_thread(current_revision, self.database)
        head = _head()
        if current == head:
            return ReadinessCheck(ok=True)
        return ReadinessCheck(
            ok=False,
            error=f"the database is at revision {current or 'none'}, the code needs {head}: "
            "run `relaykit db upgrade`",
        )

    async def check_key_provider(self) -> ReadinessCheck:
        """A probe key wrapped and unwrapped; a good answer is kept for
        :data:`KEY_CHECK_TTL_SECONDS` (``/ready`` needs no token: a probe per request would
        let anyone who reaches it drive calls to a key service), unless a key failed in this
        process since: then it probes again at once, and fails while the key does."""
        now = time.monotonic()
        failures = getattr(self.key_provider, "failures", 0)
        if self._key_ok_until > now and failures == self._key_failures_seen:
            return ReadinessCheck(ok=True)
        result = await self._probe_key_provider()
        if result.ok:
            self._key_ok_until = now + KEY_CHECK_TTL_SECONDS
            self._key_failures_seen = getattr(self.key_provider, "failures", 0)
        return result

    async def _probe_key_provider(self) -> ReadinessCheck:
        refresh = getattr(self.key_provider, "refresh", None)
        if refresh is not None:
            # The database's primary key now (an unreachable database is the database
            # check's to report: the probe goes on with the primary last read).
            with contextlib.suppress(Exception):
                await refresh()
        try:
            if runs_in_process(self.key_provider):
                same = _probe(self.key_provider)
            else:
                same = await self._in_thread(_probe, self.key_provider)
        except Exception as exc:
            # Only the type: a key service's message may quote key material or its request.
            return ReadinessCheck(
                ok=False,
                error=f"a probe key could not be wrapped and unwrapped ({type(exc).__name__})",
            )
        if not same:
            return ReadinessCheck(
                ok=False, error="the probe key came back different from the key wrapped"
            )
        recheck = getattr(self.key_provider, "recheck_failed", None)
        if recheck is not None:
            if runs_in_process(self.key_provider):
                failing = recheck()
            else:
                failing = await self._in_thread(recheck)
            if failing:
                # Which keys is in the log (relaykit.keys), not on this unauthenticated page.
                return ReadinessCheck(
                    ok=False,
                    error=f"{len(failing)} key(s) in use cannot be used by the key provider "
                    "(see the log)",
                )
        return ReadinessCheck(ok=True)

    async def check_worker(self, now: dt.datetime | None = None) -> ReadinessCheck:
        """The heartbeat of this process's worker, or else the freshest of any worker's, is
        at most ``heartbeat_interval`` seconds old."""
        watched = self.worker_owner
        owner = watched() if callable(watched) else watched
        row = await self._in_thread(self.database.read_blocking, heartbeats.latest, owner)
        if row is None:
            if owner is not None:
                return ReadinessCheck(ok=False, error="the embedded worker has not beaten yet")
            if callable(watched):  # a process of serve --workers N without the worker
                return ReadinessCheck(
                    ok=False,
                    error="no worker has a heartbeat (the embedded worker runs in another "
                    "process of this server and has not beaten yet)",
                )
            return ReadinessCheck(
                ok=False,
                error="no worker has a heartbeat (RELAYKIT_EMBEDDED_WORKER is off: run "
                "`relaykit worker`)",
            )
        age = ((now or utcnow()) - row.beat_at).total_seconds()
        if age <= self.heartbeat_interval:
            return ReadinessCheck(ok=True)
        error = f"no heartbeat for {math.floor(age)} s"
        if row.last_error:
            error += f" (last error: {row.last_error}; {row.failures} failed claim passes)"
        return ReadinessCheck(ok=False, error=error)

    async def run(self) -> Readiness:
        """Run every check together and report them (see the module docstring)."""
        checks: dict[str, Callable[[], Awaitable[ReadinessCheck]]] = {
            "database": self.check_database,
            "schema": self.check_schema,
            "key_provider": self.check_key_provider,
            "worker": self.check_worker,
        }
        results: dict[str, ReadinessCheck] = {}

        async def run(name: str, check: Callable[[], Awaitable[ReadinessCheck]]) -> None:
            results[name] = await _bounded(check, name)

        async with anyio.create_task_group() as group:
            for name, check in checks.items():
                group.start_soon(run, name, check)
        ok = all(check.ok for check in results.values())
        return Readiness(status="ready" if ok else "not_ready", checks=ReadinessChecks(**results))


async def _bounded(check: Callable[[], Awaitable[ReadinessCheck]], name: str) -> ReadinessCheck:
    try:
        with anyio.fail_after(CHECK_TIMEOUT_SECONDS):
            return await check()
    except TimeoutError:
        return ReadinessCheck(ok=False, error=f"no answer within {CHECK_TIMEOUT_SECONDS:g} s")
    except Exception as exc:
        # A database error's text can quote SQL and parameters: the type says enough.
        return ReadinessCheck(ok=False, error=f"the {name} check failed ({type(exc).__name__})")
