"""The verification worker: the integrations table is the queue.

One loop claims due ``pending_verify`` rows with a lease, in one statement
(:func:`relaykit.storage.integrations.claim_due_verifications`: rows another worker is
claiming are skipped on PostgreSQL, and SQLite's write lock serializes claims), then checks
each with its provider, with no transaction open across the provider call. A result is
applied only if the row still carries this worker's lease and the credentials version the
check started from, and is still a live ``pending_verify`` row
(:func:`~relaykit.storage.integrations.record_verification_result`): a PATCH, a delete or a
reclaim after an expired lease during the check discards the stale result.

Outcomes (through :mod:`relaykit.lifecycle`):

* accepted: ``active``, ``verified_at`` set;
* rejected: ``error``, the provider's message in ``metadata.verification``;
* transient: stays ``pending_verify`` with the attempt count, last error and next attempt
  time; the next attempt waits a random time up to ``min(max, base * 2 ** (attempt - 1))``
  ("full jitter"), and never less than the provider's ``Retry-After``; after
  ``verify_max_attempts`` transient failures: ``error``.

Each check runs under one total deadline, ``RELAYKIT_VERIFY_TIMEOUT`` (however many requests
the verifier makes, however slowly the provider answers): past it the check is ``transient``
and its slot is free for the next one.

A worker inside ``relaykit serve`` is woken at once by the API when a row becomes due
(:meth:`VerificationWorker.wake`); a separate ``relaykit worker`` process polls every
``RELAYKIT_WORKER_POLL`` seconds. Stopping a worker waits briefly for checks in flight, then
returns the leases it still holds so another worker can take them at once.

Credentials that cannot be opened (docs/security.md, "When credentials cannot be opened"):

* the key provider cannot be used (:class:`~relaykit.sealing.KeyUnavailable`: unreachable, a
  key it does not hold, access denied; or any exception that is not the blob's fault): the
  operator's fault, not the tenant's. The check is ``transient`` and does **not** count
  toward ``RELAYKIT_VERIFY_MAX_ATTEMPTS`` (the claim's attempt is given back), so an outage
  of any length never pushes a row to ``error``; it is retried after a backoff that doubles
  with the worker's consecutive key failures (from ``RELAYKIT_VERIFY_BACKOFF_BASE`` up to
  ``RELAYKIT_VERIFY_BACKOFF_MAX``), logged with the exception's type and relaykit's own
  message (never a provider's text, which may quote key material), counted in
  ``relaykit_key_provider_errors_total`` by the key set, and the claim pass is a failed one
  (``relaykit_worker_loop_errors``, the heartbeat's error: ``/ready`` shows it);
* this row's blob fails authentication or is corrupt
  (:class:`~relaykit.sealing.CredentialsUnreadable`, while the key provider works): that
  integration's fault. The check is ``rejected`` with a message that says so, and the row
  goes to ``error`` until a PATCH replaces every sensitive field.

Supervision: the claim loop survives any exception. A pass (sweep, claim, heartbeat) that
fails is logged, counted (``relaykit_worker_loop_errors``) and retried after a backoff that
doubles from ``RELAYKIT_WORKER_POLL`` up to ``RELAYKIT_WORKER_HEARTBEAT``. Every worker
keeps a row in ``worker_heartbeats`` (:mod:`relaykit.storage.heartbeats`): beaten after a
good pass, at most every half ``RELAYKIT_WORKER_HEARTBEAT``; a failed pass records its
error's type and leaves the beat time alone, so ``/ready`` sees a worker that cannot claim
once the interval passes. A clean stop deletes the row; rows of workers gone without one
are deleted by the sweep once they are :data:`STALE_HEARTBEATS` intervals old.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import os
import random
import socket
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import msgspec
import sqlalchemy as sa

from relaykit import audit, metrics
from relaykit.catalog import Catalog
from relaykit.context import WORKER_ACTOR, bound
from relaykit.ids import isoformat_z, new_id, utcnow
from relaykit.integrations import CREDENTIALS_UNREADABLE_MESSAGE
from relaykit.ledger import settle_abandoned
from relaykit.lifecycle import Action, Status, VerificationRecord, next_status
from relaykit.provider_http import ProviderClients, ProviderContext
from relaykit.sealing import (
    CredentialsUnreadable,
    Keys,
    SealContext,
    SealError,
    call_with_key_provider,
    open_credentials,
)
from relaykit.settings import Settings
from relaykit.storage import heartbeats
from relaykit.storage import integrations as rows
from relaykit.storage.database import Database, DatabaseError
from relaykit.verification import VerificationOutcome, VerificationResult, run_verifier

logger = logging.getLogger("relaykit.worker")

#: How long a stopping worker lets checks in flight finish before cancelling them.
SHUTDOWN_GRACE_SECONDS = 5.0
#: Heartbeat rows older than this many heartbeat intervals belong to workers gone without a
#: clean stop; the sweep deletes them.
STALE_HEARTBEATS = 10
#: The shortest wait after a failed claim pass, however short the poll interval.
MIN_RETRY_SECONDS = 0.05
#: Rows whose deferred checks a worker tracks for their backoff before it starts afresh.
MAX_TRACKED_DEFERRALS = 100_000


class VerificationJob(msgspec.Struct, frozen=True):
    id: str
    tenant_id: str
    provider: str
    public_credentials: dict[str, Any]
    sealed_credentials: bytes | None
    credentials_version: int
    attempt: int
    #: whether the claim took the row from a worker whose lease had expired
    lease_reclaimed: bool = False
    #: the unsealed credentials (opened in the claiming thread: one thread hop fewer), or
    #: why this row's blob cannot be opened (CredentialsUnreadable: the blob's fault)
    credentials: dict[str, Any] | None = None
    open_error: str | None = None
    #: the type of the exception raised when the key provider could not be used to open
    #: them (KeyUnavailable, or anything that is not the blob's fault), which says nothing
    #: of the credentials; and what may be shown of it (relaykit's own message for a
    #: SealError, else the type alone: a provider's text may quote key material)
    key_error: str | None = None
    key_detail: str | None = None


class ClaimPassFailed(Exception):
    """A claim pass reached the database but could not do its work (the key provider
    failed): ``error`` names the underlying exception's type, ``detail`` what may be shown."""

    def __init__(self, error: str, detail: str | None = None) -> None:
        super().__init__(
            f"the key provider could not open the claimed credentials ({detail or error})"
        )
        self.error = error


def backoff_delay(
    attempt: int, *, base: float, cap: float, retry_after: float | None, rng: random.Random
) -> float:
    """Seconds before retry number ``attempt`` (1-based): full jitter, at least Retry-After."""
    ceiling = min(cap, base * math.pow(2, max(0, attempt - 1)))
    delay = rng.uniform(0, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay


def apply_result(
    conn: sa.Connection,
    tenant_id: str,
    integration_id: str,
    *,
    owner: str,
    credentials_version: int,
    action: Action,
    verification: VerificationRecord,
    now: dt.datetime,
    next_verify_at: dt.datetime | None,
    verify_attempts: int | None = None,
) -> bool:
    """A check's outcome on its row and, when it applied, its audit event (actor
    ``worker``), in one transaction: whether it applied (see
    :func:`relaykit.storage.integrations.record_verification_result`). ``verify_attempts``
    sets the row's attempt count back for a check that does not count (the key provider
    could not be used)."""
    applied = rows.record_verification_result(
        conn,
        integration_id,
        owner=owner,
        credentials_version=credentials_version,
        action=action,
        verification=verification,
        now=now,
        next_verify_at=next_verify_at,
    )
    if applied and verify_attempts is not None:
        rows.update_fields(conn, integration_id, {"verify_attempts": verify_attempts})
    if applied:
        audit.record_verification(conn, tenant_id, integration_id, action, verification, now)
    return applied


class VerificationWorker:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        catalog: Catalog,
        key_provider: Keys,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        owner: str | None = None,
    ) -> None:
        self.settings = settings
        self.database = database
        self.catalog = catalog
        self.key_provider = key_provider
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{new_id()[-8:]}"
        self._clients = ProviderClients(
            settings.api_bases, timeout=settings.verify_timeout, transport=transport
        )
        self._rng = random.Random()  # noqa: S311 (retry jitter, not a secret)
        self._wakeup: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._in_flight = 0
        self._started_at = utcnow()
        #: monotonic time of the last heartbeat written (-inf: none yet)
        self._last_beat = -math.inf
        self._next_sweep = 0.0
        #: claim passes that failed since the worker started, and in a row now
        self.failures = 0
        self._failing = 0
        #: claims in a row where the key provider could not open credentials
        self._key_failing = 0
        #: checks deferred in a row per integration (the key provider could not open its
        #: credentials): each row's own backoff, in memory (a restart starts it again)
        self._deferrals: dict[str, int] = {}
        #: counters for the log and for tests
        self.stats = {"claimed": 0, "active": 0, "error": 0, "retry": 0, "stale": 0}

    # -- control ---------------------------------------------------------------------------

    def wake(self) -> None:
        """A row became due: look now, not at the next poll. Safe from any thread."""
        loop, event = self._loop, self._wakeup
        if loop is None or event is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed in between
            loop.call_soon_threadsafe(event.set)

    def stop(self) -> None:
        self._stopping = True
        self.wake()

    async def run(self) -> None:
        """Claim and check until :meth:`stop`; then return the leases still held."""
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._started_at = utcnow()
        self._last_beat = -math.inf
        with bound(actor=WORKER_ACTOR):
            await self._run()

    async def _run(self) -> None:
        logger.info(
            "verification worker %s started (concurrency %d, lease %gs, timeout %gs)",
            self.owner,
            self.settings.worker_concurrency,
            self.settings.verify_lease,
            self.settings.verify_timeout,
        )
        try:
            async with anyio.create_task_group() as group:
                try:
                    await self._claim_loop(group)
                finally:
                    with anyio.move_on_after(SHUTDOWN_GRACE_SECONDS, shield=True):
                        while self._in_flight:
                            await self._wait(0.05)
                    group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                released = await self._release_leases()
                await self._clients.aclose()
                await self._remove_heartbeat()
            logger.info("verification worker %s stopped (%d leases returned)", self.owner, released)

    async def _claim_loop(self, group: anyio.abc.TaskGroup) -> None:
        """Claim passes until :meth:`stop`, surviving any exception (see the module docstring)."""
        self._next_sweep = 0.0
        while not self._stopping:
            try:
                more = await self._claim_pass(group)
            except Exception as exc:
                delay = await self._pass_failed(exc)
                self._last_beat = -math.inf  # the next good pass beats, clearing the error
                await self._sleep(delay)
                continue
            self._failing = 0
            if more:
                await anyio.lowlevel.checkpoint()  # there may be more due: claim again
                if self._in_flight >= self.settings.worker_concurrency:
                    await self._wait(self.idle_wait)  # until a slot frees
                continue
            await self._wait(self.idle_wait)

    @property
    def idle_wait(self) -> float:
        """Seconds between passes when nothing wakes the worker: the poll interval, but
        never so long that the heartbeat goes stale (a pass beats at most every half
        interval, so a poll longer than that would fail /ready on an idle, healthy worker)."""
        return min(self.settings.worker_poll, self.settings.worker_heartbeat / 2)

    async def _claim_pass(self, group: anyio.abc.TaskGroup) -> bool:
        """Sweep when due, claim what fits, start the checks, beat when due. Whether every
        free slot was filled (there may be more due)."""
        if anyio.current_time() >= self._next_sweep:
            await self.sweep_ledger()
            await self._sweep_heartbeats()
            self._next_sweep = anyio.current_time() + self.sweep_interval
        free = self.settings.worker_concurrency - self._in_flight
        claimed = await self._claim(free) if free > 0 else []
        for job in claimed:
            self._in_flight += 1
            group.start_soon(self._check, job)
        failed = next((job for job in claimed if job.key_error), None)
        if failed is not None and failed.key_error is not None:
            raise ClaimPassFailed(failed.key_error, failed.key_detail)
        await self._beat()
        return bool(claimed) and len(claimed) == free

    def key_retry_delay(self, failing: int) -> float:
        """Seconds before a check the key provider stopped is tried again, after ``failing``
        checks of that row in a row it could not open the credentials of: doubling from
        ``RELAYKIT_VERIFY_BACKOFF_BASE`` up to ``RELAYKIT_VERIFY_BACKOFF_MAX``, jittered down
        to half (never near zero: these checks do not count, so nothing else bounds them)."""
        base = max(MIN_RETRY_SECONDS, self.settings.verify_backoff_base)
        cap = max(base, self.settings.verify_backoff_max)
        ceiling = min(cap, base * math.pow(2, min(max(0, failing - 1), 32)))
        return self._rng.uniform(ceiling / 2, ceiling)

    def retry_delay(self, failing: int) -> float:
        """Seconds before the next pass after ``failing`` failed passes in a row: doubling
        from the poll interval, capped at the heartbeat interval, jittered down to half."""
        poll = max(MIN_RETRY_SECONDS, self.settings.worker_poll)
        cap = max(poll, self.settings.worker_heartbeat)
        ceiling = min(cap, poll * math.pow(2, min(max(0, failing - 1), 32)))
        return self._rng.uniform(ceiling / 2, ceiling)

    async def _pass_failed(self, exc: Exception) -> float:
        """Log, count and record a failed claim pass; the seconds to wait before the next."""
        self.failures += 1
        self._failing += 1
        error = exc.error if isinstance(exc, ClaimPassFailed) else type(exc).__name__
        metrics.WORKER_LOOP_ERRORS.labels(error).inc()
        delay = self.retry_delay(self._failing)
        # A database error's text quotes its statement and parameters: its type says enough.
        if isinstance(exc, DatabaseError):
            detail = error
        elif isinstance(exc, ClaimPassFailed):
            detail = str(exc)  # relaykit's words: never a key provider's own text
        else:
            detail = f"{error}: {exc}"
        logger.warning(
            "verification worker %s: claim pass failed (%s), %d in a row; next in %.1f s",
            self.owner,
            detail,
            self._failing,
            delay,
        )
        logger.debug("the failed claim pass's traceback", exc_info=exc)
        try:
            await self.database.transaction(
                heartbeats.record_failure,
                self.owner,
                started_at=self._started_at,
                error=error,
                failures=self.failures,
            )
        except Exception as record_exc:  # the database may be what failed
            logger.debug("recording the failure failed too: %s", type(record_exc).__name__)
        return delay

    async def _beat(self) -> None:
        """Write the heartbeat if half an interval has passed since the last (or the last
        pass failed, to clear its error)."""
        now = anyio.current_time()
        if now - self._last_beat < self.settings.worker_heartbeat / 2:
            return
        await self.database.transaction(
            heartbeats.beat,
            self.owner,
            started_at=self._started_at,
            now=utcnow(),
            failures=self.failures,
        )
        self._last_beat = now

    async def _sweep_heartbeats(self) -> None:
        before = utcnow() - dt.timedelta(seconds=STALE_HEARTBEATS * self.settings.worker_heartbeat)
        gone = await self.database.transaction(heartbeats.delete_stale, before=before)
        if gone:
            logger.info("heartbeats of %d workers gone without stopping deleted", gone)

    async def _remove_heartbeat(self) -> None:
        try:
            await self.database.transaction(heartbeats.remove, self.owner)
        except Exception as exc:
            logger.warning(
                "removing the heartbeat of %s failed: %s", self.owner, type(exc).__name__
            )

    async def _sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the worker stops (a wake from the API does not cut a
        backoff short)."""
        deadline = anyio.current_time() + seconds
        while not self._stopping and (left := deadline - anyio.current_time()) > 0:
            await self._wait(left)

    @property
    def sweep_interval(self) -> float:
        """Seconds between sweeps of the operations ledger: often enough that an operation
        whose process died is settled soon after its lease, at most every 30 s."""
        return min(30.0, max(1.0, self.settings.operation_deadline / 2))

    async def sweep_ledger(self) -> dict[str, int]:
        """Settle what dead processes left in the operations ledger, release expired
        idempotency keys, delete operations and webhook events past retention (relaykit.ledger)."""
        try:
            counts = await self.database.transaction(
                settle_abandoned,
                now=utcnow(),
                deadline_seconds=self.settings.operation_deadline,
                retention_days=self.settings.retention_days,
            )
        except DatabaseError as exc:
            logger.warning("sweeping the operations ledger failed: %s", type(exc).__name__)
            return {}
        if any(counts.values()):
            logger.info(
                "ledger sweep: %(attempts)d attempts and %(operations)d operations settled as "
                "their processes are gone, %(keys)d idempotency keys released, %(deleted)d "
                "operations and %(webhook_events)d webhook events past retention deleted",
                counts,
            )
        return counts

    async def _wait(self, timeout: float) -> None:
        assert self._wakeup is not None
        with anyio.move_on_after(timeout):
            await self._wakeup.wait()
        self._wakeup.clear()

    async def run_until_idle(self, *, timeout: float = 30.0) -> None:
        """Check everything due now, then return (tests and one-shot tooling)."""
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        with anyio.fail_after(timeout):
            while True:
                jobs = await self._claim(self.settings.worker_concurrency)
                if not jobs:
                    break
                async with anyio.create_task_group() as group:
                    for job in jobs:
                        self._in_flight += 1
                        group.start_soon(self._check, job)
        await self._release_leases()

    # -- one check -------------------------------------------------------------------------

    async def _check(self, job: VerificationJob) -> None:
        try:
            with bound(actor=WORKER_ACTOR, tenant_id=job.tenant_id, integration_id=job.id):
                result = await self._verify(job)
                await self._apply(job, result)
        except Exception:
            # Never let one check take the worker down; the lease expires and it is retried.
            logger.exception("verification of integration %s failed unexpectedly", job.id)
        finally:
            self._in_flight -= 1
            self.wake()

    async def _verify(self, job: VerificationJob) -> VerificationResult:
        provider = self.catalog.get(job.provider)
        if provider is None:
            return VerificationResult.transient(
                f"the provider {job.provider} is not installed on this worker"
            )
        if job.key_error is not None:
            # The tenant sees the type only: the detail (a key id, a keyring's path) is the
            # operator's, in the log.
            return VerificationResult.transient(
                f"the key provider could not open the stored credentials ({job.key_error}); "
                "this check does not count toward the attempts"
            )
        if job.credentials is None:
            return VerificationResult.rejected(CREDENTIALS_UNREADABLE_MESSAGE)
        credentials = job.credentials
        client = self._clients.get(provider)
        ctx = ProviderContext(client, str(client.base_url))
        return await run_verifier(provider, credentials, ctx, deadline=self.settings.verify_timeout)

    def _open(self, job: VerificationJob) -> dict[str, Any]:
        secret: dict[str, Any] = {}
        if job.sealed_credentials:
            context = SealContext(job.tenant_id, job.id, job.provider)
            secret = open_credentials(job.sealed_credentials, context, self.key_provider)
        return {**job.public_credentials, **secret}

    # -- the database side -------------------------------------------------------------------

    async def _claim(self, limit: int) -> list[VerificationJob]:
        """Claim up to ``limit`` due rows (their leases) and open their credentials."""
        now = utcnow()
        claimed = await self.database.transaction(
            rows.claim_due_verifications,
            owner=self.owner,
            limit=limit,
            now=now,
            lease_until=now + dt.timedelta(seconds=self.settings.verify_lease),
        )
        jobs = [
            VerificationJob(
                id=r.id,
                tenant_id=r.tenant_id,
                provider=r.provider,
                public_credentials=dict(r.public_credentials or {}),
                sealed_credentials=r.sealed_credentials,
                credentials_version=r.credentials_version,
                attempt=r.verify_attempts,
                lease_reclaimed=bool(r.lease_reclaimed),
            )
            for r in claimed
        ]
        reclaimed = sum(job.lease_reclaimed for job in jobs)
        if reclaimed:
            metrics.LEASE_RECLAIMS.inc(reclaimed)
        opened = await call_with_key_provider(self.key_provider, self._with_credentials, jobs)
        if any(job.key_error for job in opened):
            self._key_failing += 1
        elif opened:
            self._key_failing = 0
        self.stats["claimed"] += len(opened)
        return opened

    def _with_credentials(self, jobs: list[VerificationJob]) -> list[VerificationJob]:
        opened = []
        for job in jobs:
            try:
                opened.append(msgspec.structs.replace(job, credentials=self._open(job)))
            except CredentialsUnreadable as exc:
                # This blob's fault (altered, or another row's): the check rejects it.
                logger.warning(
                    "the stored credentials of integration %s cannot be opened: %s", job.id, exc
                )
                opened.append(msgspec.structs.replace(job, open_error=str(exc)))
            except Exception as exc:
                # The key provider could not be used (KeyUnavailable: a KMS outage, a key it
                # does not hold; or a plugin's bug): nothing is known of the credentials.
                # relaykit's own message (a SealError's never holds material), else the type.
                name = type(exc).__name__
                detail = f"{name}: {exc}" if isinstance(exc, SealError) else name
                logger.warning(
                    "the key provider could not open the credentials of integration %s (%s); "
                    "the check is retried and does not count",
                    job.id,
                    detail,
                )
                opened.append(msgspec.structs.replace(job, key_error=name, key_detail=detail))
        return opened

    async def _apply(self, job: VerificationJob, result: VerificationResult) -> None:
        """Record the check's result on the row, if the row is still the one checked."""
        now = utcnow()
        action, record, next_at = self._outcome(job, result, now)
        applied = await self.database.transaction(
            apply_result,
            job.tenant_id,
            job.id,
            owner=self.owner,
            credentials_version=job.credentials_version,
            action=action,
            verification=record,
            now=now,
            next_verify_at=next_at,
            # a check the key provider stopped does not count: the claim's attempt is given back
            verify_attempts=max(0, job.attempt - 1) if job.key_error is not None else None,
        )
        if not applied:
            self.stats["stale"] += 1
            metrics.VERIFICATIONS.labels(job.provider, "stale").inc()
            logger.info(
                "verification of integration %s discarded: the row changed during the check",
                job.id,
            )
            return
        key = {
            Action.VERIFICATION_ACCEPTED: "active",
            Action.VERIFICATION_REJECTED: "error",
            Action.VERIFICATION_GAVE_UP: "error",
        }.get(action, "retry")
        self.stats[key] += 1
        outcome = "gave_up" if action is Action.VERIFICATION_GAVE_UP else result.outcome.value
        metrics.VERIFICATIONS.labels(job.provider, outcome).inc()
        logger.info(
            "integration %s verification %s (attempt %d): %s -> %s",
            job.id,
            result.outcome,
            job.attempt,
            Status.PENDING_VERIFY.value,
            next_status(action, Status.PENDING_VERIFY).value,
        )

    def _outcome(
        self, job: VerificationJob, result: VerificationResult, now: dt.datetime
    ) -> tuple[Action, VerificationRecord, dt.datetime | None]:
        """The lifecycle action a result means, its record, and when to check next."""
        record = VerificationRecord(
            outcome=result.outcome.value,
            message=result.message,
            attempts=job.attempt,
            checked_at=isoformat_z(now) or "",
            provider_status=result.status_code,
        )
        if job.key_error is not None:
            # The operator's fault: retried without counting, never given up on, each row
            # backing off on its own (one key denied must not slow the rows under another).
            if len(self._deferrals) >= MAX_TRACKED_DEFERRALS:
                self._deferrals.clear()
            deferred = self._deferrals[job.id] = self._deferrals.get(job.id, 0) + 1
            next_at = now + dt.timedelta(seconds=self.key_retry_delay(deferred))
            record = msgspec.structs.replace(
                record,
                attempts=max(0, job.attempt - 1),
                last_error=result.message,
                next_attempt_at=isoformat_z(next_at),
            )
            return Action.VERIFICATION_DEFERRED, record, next_at
        self._deferrals.pop(job.id, None)
        if result.outcome is VerificationOutcome.ACCEPTED:
            return Action.VERIFICATION_ACCEPTED, record, None
        if result.outcome is VerificationOutcome.REJECTED:
            return (
                Action.VERIFICATION_REJECTED,
                msgspec.structs.replace(record, error=result.message),
                None,
            )
        if job.attempt >= self.settings.verify_max_attempts:
            error = f"Verification gave up after {job.attempt} attempts: {result.message}"
            return Action.VERIFICATION_GAVE_UP, msgspec.structs.replace(record, error=error), None
        delay = backoff_delay(
            job.attempt,
            base=self.settings.verify_backoff_base,
            cap=self.settings.verify_backoff_max,
            retry_after=result.retry_after,
            rng=self._rng,
        )
        next_at = now + dt.timedelta(seconds=delay)
        record = msgspec.structs.replace(
            record, last_error=result.message, next_attempt_at=isoformat_z(next_at)
        )
        return Action.VERIFICATION_DEFERRED, record, next_at

    async def _release_leases(self) -> int:
        """Return the leases of checks that did not finish; their attempt does not count."""
        return await self.database.transaction(rows.release_leases, self.owner)
