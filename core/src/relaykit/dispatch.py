"""Dispatch: one operation through routing, with fallback, idempotency and a write-ahead
record of every try.

``POST /api/v1/operations/{capability}`` lands here. In order:

1. The body is decoded into the capability's input Struct (422 keyed by field otherwise).
2. One transaction records the operation ``in_progress`` (with its ``Idempotency-Key``,
   scoped to the tenant, and a lease), resolves the route (:mod:`relaykit.routing`) and
   records the first attempt ``in_flight``. A repeat of a key replays, conflicts or runs
   again as :mod:`relaykit.ledger` says; the same key with another body is a 422.
3. Each try's attempt row is committed before its provider call and finished after it
   (outcome, provider status and code, message, duration; never a credential). A crash
   leaves an ``in_flight`` attempt that the worker settles as ``outcome_unknown``.
   ``transient``: next candidate. ``auth_failed``: that integration moves to ``error`` (the
   provider's message in its metadata), next candidate. ``rejected`` or ``unknown``: stop
   and report. Before a fallback is tried its status is checked again, in the transaction
   that records its attempt. A try already under way is never interrupted by the tenant:
   disabling an integration stops new tries, not one in flight. ``RELAYKIT_OPERATION_DEADLINE``
   bounds the whole operation: no try starts after it, and a call still running at it is
   abandoned as ``unknown``.
4. The last attempt and the operation are finished in one transaction; an operation where
   no provider can have acted releases its key (:mod:`relaykit.ledger` has the table).

Stored credentials that cannot be opened (docs/security.md): a blob that fails
authentication (:class:`~relaykit.sealing.CredentialsUnreadable`) is that integration's
fault: its attempt is ``auth_failed`` with nothing sent, the integration moves to ``error``
with the reason, and the next candidate is tried. A key provider that cannot be used
(:class:`~relaykit.sealing.KeyUnavailable`, or any other exception while opening) is the
operator's: nothing is sent on that candidate (``transient``), the integration is left as
it is, and if no candidate succeeds the answer is a 503 ``key_provider_unavailable`` with the
operation (its key released: nothing was sent, so a retry runs again).

If the database fails while the operation runs, the answer is a 503
``ledger_unavailable`` naming the operation; no provider call is made without its attempt
row committed first. The provider sees the same idempotency key on every try of one
operation (the client's key, else the operation id), so a provider that honours keys
(Stripe) never does one request twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from typing import Any

import anyio
import httpx
import msgspec
import sqlalchemy as sa

from relaykit import audit
from relaykit.capabilities import CapabilityContract, decode_input
from relaykit.catalog import Catalog
from relaykit.errors import ConflictError, NotFoundError, RelaykitError, ValidationError
from relaykit.ids import isoformat_z, new_id, utcnow
from relaykit.integrations import CREDENTIALS_UNREADABLE_MESSAGE
from relaykit.ledger import (
    FAILED,
    IN_FLIGHT,
    IN_PROGRESS,
    OUTCOME_UNKNOWN,
    SUCCEEDED,
    DispatchResponse,
    attempt_view,
    check_idempotency_key,
    lease_until,
    operation_view,
    outcome_unknown_response,
    settle,
)
from relaykit.lifecycle import Action, Status, VerificationRecord
from relaykit.metrics import DISPATCH_ATTEMPTS, FALLBACKS
from relaykit.operations import OperationContext, OperationOutcome, OperationResult, run_operation
from relaykit.provider_http import ProviderClients
from relaykit.routing import RouteCandidate, RoutingService
from relaykit.sealing import CredentialsUnreadable, Keys, SealContext, SealError, unseal
from relaykit.settings import Settings
from relaykit.storage import delivery_attempts as attempt_rows
from relaykit.storage import integrations as integration_rows
from relaykit.storage import operations as operation_rows
from relaykit.storage import webhook_events as event_rows
from relaykit.storage.database import Database, DatabaseError, IntegrityError
from relaykit.webhooks import ACCEPTED

logger = logging.getLogger("relaykit.dispatch")

IDEMPOTENCY_FIELD = "Idempotency-Key"

__all__ = [
    "DispatchResponse",
    "Dispatcher",
    "IdempotencyConflict",
    "LedgerUnavailable",
    "OperationExpired",
    "open_sealed",
    "provider_object_id",
]

#: The result fields that name what the provider made, in the order they are looked for:
#: an attempt's ``provider_object_id``, the key its webhooks name it by.
OBJECT_ID_FIELDS = ("provider_message_id", "provider_payment_id", "provider_refund_id")


def provider_object_id(result: Any) -> str | None:
    """The provider's id of what an operation's result says it made (the first of
    :data:`OBJECT_ID_FIELDS` present), or ``None``."""
    for name in OBJECT_ID_FIELDS:
        value = getattr(result, name, None)
        if isinstance(value, str) and value:
            return value
    return None


async def open_sealed(
    key_provider: Keys,
    tenant_id: str,
    integration_id: str,
    provider: str,
    sealed: bytes | None,
) -> dict[str, Any]:
    """An integration's sensitive credentials, opened in memory (``{}`` when none are
    stored): what a provider call and a webhook check both need."""
    if not sealed:
        return {}
    context = SealContext(tenant_id, integration_id, provider)
    return await unseal(sealed, context, key_provider)


class IdempotencyConflict(ConflictError):
    """The same key is still being processed (409)."""

    code = "idempotency_conflict"

    def __init__(self) -> None:
        super().__init__("A request with this Idempotency-Key is still being processed.")


class LedgerUnavailable(RelaykitError):
    """The database failed while an operation ran (503): what was recorded stands.
    ``operation_id`` is ``None`` when nothing of the operation was recorded (and nothing
    sent)."""

    code = "ledger_unavailable"

    def __init__(self, operation_id: str | None) -> None:
        self.operation_id = operation_id
        super().__init__(
            f"The operation {operation_id} could not be recorded; see GET "
            f"/api/v1/operations/{operation_id} for what was done before trying again."
            if operation_id is not None
            else "The operation could not be recorded, and nothing was sent; try again."
        )


class OperationExpired(ConflictError):
    """The operation ran past its lease and was settled by another process meanwhile (409):
    nothing more is sent."""

    code = "operation_expired"

    def __init__(self, operation_id: str) -> None:
        self.operation_id = operation_id
        super().__init__(
            f"The operation {operation_id} ran past its deadline and was settled meanwhile; "
            f"nothing more was sent (see GET /api/v1/operations/{operation_id})."
        )


#: An integration whose credentials a provider refused (or whose stored credentials cannot
#: be opened): its id, the credentials version refused, the record for its metadata, and
#: the audit action that records the move to ``error``.
Refusal = tuple[str, int, VerificationRecord, str]

#: The code (and HTTP status) of an operation no candidate served because the key provider
#: could not open the credentials of at least one of them: the operator's fault.
KEY_PROVIDER_UNAVAILABLE = "key_provider_unavailable"


class _Run(msgspec.Struct):
    """One operation as it runs."""

    tenant_id: str
    capability: str
    contract: CapabilityContract
    request: msgspec.Struct
    operation_id: str
    idempotency_key: str | None
    started: dt.datetime
    deadline: float  # time.monotonic() past which no try starts
    #: integrations whose stored credentials failed authentication in this operation
    unreadable: set[str] = msgspec.field(default_factory=set)
    #: whether the key provider could not open some candidate's credentials
    key_unavailable: bool = False


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        catalog: Catalog,
        key_provider: Keys,
        routing: RoutingService,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.database = database
        self.catalog = catalog
        self.key_provider = key_provider
        self.routing = routing
        self._clients = ProviderClients(
            settings.api_bases, timeout=settings.operation_timeout, transport=transport
        )
        # Each integration's webhook URL is this plus its id (built once, not per call).
        self._webhook_base = (
            settings.public_url.rstrip("/") + "/webhooks/" if settings.public_url else None
        )

    async def aclose(self) -> None:
        await self._clients.aclose()

    # -- the flow ------------------------------------------------------------------------------

    async def dispatch(
        self, tenant_id: str, capability: str, payload: Any, idempotency_key: str | None
    ) -> DispatchResponse:
        contract = self.catalog.contracts.get(capability)
        if contract is None:
            raise NotFoundError(f"Unknown capability {capability}.")
        errors: dict[str, list[str]] = {}
        check_idempotency_key(IDEMPOTENCY_FIELD, idempotency_key, errors)
        if errors:
            raise ValidationError(errors)
        request = decode_input(contract, payload)
        request_hash = hashlib.sha256(
            capability.encode()
            + b"\x00"
            + msgspec.json.encode(msgspec.to_builtins(request), order="sorted")
        ).hexdigest()
        run = _Run(
            tenant_id=tenant_id,
            capability=capability,
            contract=contract,
            request=request,
            operation_id=new_id(),
            idempotency_key=idempotency_key,
            started=utcnow(),
            deadline=time.monotonic() + self.settings.operation_deadline,
        )
        begun = await self._begin(run, request_hash)
        if isinstance(begun, DispatchResponse):
            return begun  # a replay, or an earlier request's unknown outcome
        candidates, first = begun

        finished: list[dict[str, Any]] = []
        final: OperationResult | None = None
        served_by: str | None = None
        for index, candidate in enumerate(candidates):
            if index == 0:
                attempt = first
            else:
                if time.monotonic() >= run.deadline:
                    break  # no try starts past the operation's deadline
                attempt = self._attempt(run, candidate)
                fresh = await self._ledger(self._start_fallback, run, candidate, attempt)
                if fresh is None:
                    continue
                candidate = fresh
                FALLBACKS.labels(run.capability).inc()  # its try is recorded: it is taken
            assert attempt is not None
            result, ended = await self._try(run, candidate, attempt)
            finished.append({**attempt, **ended})
            final = result
            if result.outcome is OperationOutcome.SUCCEEDED:
                served_by = candidate.integration_id
            elif result.outcome in (OperationOutcome.REJECTED, OperationOutcome.UNKNOWN):
                served_by = candidate.integration_id  # this one answered
            refusal = (
                self._refusal(run, candidate, result)
                if result.outcome is OperationOutcome.AUTH_FAILED
                else None
            )
            last = served_by is not None or index == len(candidates) - 1
            if last:
                response = self._response(run, final, served_by, finished)
                await self._ledger(self._finish, run, attempt, ended, refusal, response)
                return response
            await self._ledger(self._finish_attempt, run, attempt, ended, refusal)

        response = self._response(run, final, served_by, finished)
        await self._ledger(self._finish, run, None, None, None, response)
        return response

    async def _ledger(self, fn: Any, run: _Run, *args: Any) -> Any:
        """One write of the operation's record; a failed one is a 503 naming the operation."""
        try:
            return await self.database.transaction(fn, run, *args)
        except DatabaseError:
            logger.exception("recording operation %s failed", run.operation_id)
            raise LedgerUnavailable(run.operation_id) from None

    # -- one try -------------------------------------------------------------------------------

    def _attempt(self, run: _Run, candidate: RouteCandidate) -> dict[str, Any]:
        """An attempt's row as it is written before the call: ``in_flight``."""
        return {
            "id": new_id(),
            "tenant_id": run.tenant_id,
            "operation_id": run.operation_id,
            "integration_id": candidate.integration_id,
            "provider": candidate.provider,
            "capability": run.capability,
            "status": IN_FLIGHT,
            "outcome": None,
            "provider_status_code": None,
            "provider_code": None,
            "message": "",
            "duration_ms": None,
            "started_at": utcnow(),
            "completed_at": None,
        }

    async def _try(
        self, run: _Run, candidate: RouteCandidate, attempt: dict[str, Any]
    ) -> tuple[OperationResult, dict[str, Any]]:
        """Call the provider (the attempt is already recorded); the result and what ends the
        attempt's row."""
        clock = time.perf_counter()
        result = await self._call(run, candidate)
        duration_ms = round((time.perf_counter() - clock) * 1000, 3)
        succeeded = result.outcome is OperationOutcome.SUCCEEDED
        DISPATCH_ATTEMPTS.labels(candidate.provider, run.capability, result.outcome.value).inc()
        now = utcnow()
        ended = {
            "status": SUCCEEDED if succeeded else FAILED,
            "outcome": result.outcome.value,
            "provider_status_code": result.status_code,
            "provider_code": result.provider_code,
            "message": result.message or ("OK" if succeeded else ""),
            "duration_ms": duration_ms,
            "completed_at": now,
            "provider_object_id": provider_object_id(result.result) if succeeded else None,
            # The provider took it; its webhooks move it on (relaykit.webhooks.STATUS_RANK).
            "delivery_status": ACCEPTED if succeeded else None,
            "delivery_updated_at": now if succeeded else None,
        }
        logger.info(
            "operation %s try %s on integration %s (%s): %s in %.1f ms",
            run.operation_id,
            attempt["id"],
            candidate.integration_id,
            candidate.provider,
            result.outcome,
            duration_ms,
        )
        return result, ended

    async def _call(self, run: _Run, candidate: RouteCandidate) -> OperationResult:
        provider = self.catalog.get(candidate.provider)
        if provider is None:
            return OperationResult.failed(
                OperationOutcome.TRANSIENT, f"the provider {candidate.provider} is not installed"
            )
        try:
            secrets = await self._open(run.tenant_id, candidate)
        except CredentialsUnreadable as exc:
            # This blob's fault (altered, or another row's): the integration goes to error.
            logger.warning(
                "operation %s: the stored credentials of integration %s cannot be opened (%s); "
                "nothing sent, it moves to error",
                run.operation_id,
                candidate.integration_id,
                exc,
            )
            run.unreadable.add(candidate.integration_id)
            return OperationResult.failed(
                OperationOutcome.AUTH_FAILED,
                "The stored credentials cannot be opened: they failed authentication "
                "(altered, or copied from another integration); nothing was sent.",
            )
        except Exception as exc:
            # The key provider could not be used (KeyUnavailable: unreachable, a key it does
            # not hold; or another failure): the operator's fault, the integration stays as
            # it is. relaykit's own message (a SealError's holds no material), else the type.
            name = type(exc).__name__
            detail = f"{name}: {exc}" if isinstance(exc, SealError) else name
            logger.warning(
                "operation %s: the key provider could not open the credentials of "
                "integration %s (%s); nothing sent",
                run.operation_id,
                candidate.integration_id,
                detail,
            )
            run.key_unavailable = True
            return OperationResult.failed(
                OperationOutcome.TRANSIENT,
                f"The key provider could not open the stored credentials now ({name}); "
                "nothing was sent.",
            )
        remaining = run.deadline - time.monotonic()
        if remaining <= 0:
            return OperationResult.failed(
                OperationOutcome.TRANSIENT,
                "the operation's deadline passed before this try could start; nothing was sent",
            )
        client = self._clients.get(provider)
        ctx = OperationContext(
            client,
            str(client.base_url),
            operation_id=run.operation_id,
            idempotency_key=run.idempotency_key or run.operation_id,
            webhook_url=(
                self._webhook_base + candidate.integration_id
                if self._webhook_base is not None
                else None
            ),
        )
        result: OperationResult | None = None
        with anyio.move_on_after(remaining):
            result = await run_operation(
                provider.operations[run.capability],
                run.request,
                {**candidate.public_credentials, **secrets},
                ctx,
                output=run.contract.output,
                secrets=secrets,
            )
        if result is None:
            return OperationResult.failed(
                OperationOutcome.UNKNOWN,
                "the operation's deadline passed during the provider call; it may have acted",
            )
        return result

    async def _open(self, tenant_id: str, candidate: RouteCandidate) -> dict[str, Any]:
        return await open_sealed(
            self.key_provider,
            tenant_id,
            candidate.integration_id,
            candidate.provider,
            candidate.sealed_credentials,
        )

    def _refusal(self, run: _Run, candidate: RouteCandidate, result: OperationResult) -> Refusal:
        """The integration whose credentials a provider refused (or whose stored credentials
        cannot be opened), which credentials, the record of it and its audit action."""
        checked_at = isoformat_z(utcnow()) or ""
        if candidate.integration_id in run.unreadable:
            return (
                candidate.integration_id,
                candidate.credentials_version,
                VerificationRecord(
                    outcome="credentials_unreadable",
                    message=CREDENTIALS_UNREADABLE_MESSAGE,
                    error=CREDENTIALS_UNREADABLE_MESSAGE,
                    operation_id=run.operation_id,
                    checked_at=checked_at,
                ),
                audit.INTEGRATION_CREDENTIALS_UNREADABLE,
            )
        return (
            candidate.integration_id,
            candidate.credentials_version,
            VerificationRecord(
                outcome="auth_failed",
                message=result.message,
                error=f"The provider refused the credentials during an operation: {result.message}",
                operation_id=run.operation_id,
                checked_at=checked_at,
            ),
            audit.INTEGRATION_PROVIDER_REFUSED,
        )

    # -- the record (each a function of one transaction) ---------------------------------------

    async def _begin(
        self, run: _Run, request_hash: str
    ) -> tuple[list[RouteCandidate], dict[str, Any] | None] | DispatchResponse:
        try:
            return await self.database.transaction(self._record_start, run, request_hash)
        except DatabaseError:
            logger.exception("recording operation %s failed", run.operation_id)
            raise LedgerUnavailable(None) from None  # rolled back: nothing recorded or sent

    def _record_start(
        self, conn: sa.Connection, run: _Run, request_hash: str
    ) -> tuple[list[RouteCandidate], dict[str, Any] | None] | DispatchResponse:
        """Claim the key (or answer from what it holds), record the operation, resolve the
        route and record the first attempt: the route and the claim are one snapshot."""
        now = run.started
        key = run.idempotency_key
        if key is not None:
            existing = operation_rows.by_idempotency_key(conn, run.tenant_id, key)
            if (
                existing is not None
                and existing.key_expires_at is not None
                and existing.key_expires_at <= now
            ):
                operation_rows.release_key(conn, existing.id)
                existing = None
            if existing is not None:
                if existing.request_hash != request_hash:
                    raise ValidationError(
                        {IDEMPOTENCY_FIELD: ["This key was already used with a different request."]}
                    )
                if existing.status != IN_PROGRESS and existing.response is not None:
                    return msgspec.convert(existing.response, DispatchResponse)
                if existing.status == OUTCOME_UNKNOWN:  # settled from an earlier version
                    view = operation_view(existing, attempt_rows.of_operation(conn, existing.id))
                    return outcome_unknown_response(view)
                if existing.lease_expires_at is not None and existing.lease_expires_at > now:
                    raise IdempotencyConflict
                answer = settle(conn, existing, now)  # its process is gone
                if answer is not None:
                    return answer
        values = {
            "id": run.operation_id,
            "tenant_id": run.tenant_id,
            "capability": run.capability,
            "status": IN_PROGRESS,
            "integration_id": None,
            "idempotency_key": key,
            "request_hash": request_hash,
            "response": None,
            "created_at": now,
            "completed_at": None,
            "lease_expires_at": lease_until(now, self.settings.operation_deadline),
            "key_expires_at": (
                now + dt.timedelta(seconds=self.settings.idempotency_key_ttl)
                if key is not None
                else None
            ),
        }
        try:
            operation_rows.insert(conn, values)
        except IntegrityError:
            if key is None:
                raise
            # Another request claimed the key between our read and insert: it is running.
            raise IdempotencyConflict from None
        candidates = self.routing.candidates_in(conn, run.tenant_id, run.capability)
        first = self._attempt(run, candidates[0]) if candidates else None
        if first is not None:
            attempt_rows.insert(conn, first)
        return candidates, first

    def _start_fallback(
        self, conn: sa.Connection, run: _Run, candidate: RouteCandidate, attempt: dict[str, Any]
    ) -> RouteCandidate | None:
        """Record a fallback's attempt if the integration may still be tried: the candidate
        with its credentials as they are now, or ``None``. The operation's lease is renewed
        here; an operation settled meanwhile (it ran past its lease) stops."""
        now = utcnow()
        until = lease_until(now, self.settings.operation_deadline)
        if not operation_rows.renew_lease(conn, run.operation_id, now=now, until=until):
            raise OperationExpired(run.operation_id)
        current = integration_rows.credentials_if_usable(
            conn, run.tenant_id, candidate.integration_id, run.capability
        )
        if current is None:
            return None
        attempt_rows.insert(conn, attempt)
        return msgspec.structs.replace(
            candidate,
            provider=current.provider,
            public_credentials=dict(current.public_credentials or {}),
            sealed_credentials=current.sealed_credentials,
            credentials_version=current.credentials_version,
        )

    def _finish_attempt(
        self,
        conn: sa.Connection,
        run: _Run,
        attempt: dict[str, Any],
        ended: dict[str, Any],
        refusal: Refusal | None,
    ) -> None:
        attempt_rows.finish(conn, attempt["id"], ended)
        object_id = ended.get("provider_object_id")
        if object_id is not None:
            self._apply_early_events(conn, attempt, object_id)
        if refusal is not None:
            integration_id, version, record, action = refusal
            now = utcnow()
            # Only an integration still active with the credentials refused moves: one
            # disabled or re-credentialed meanwhile keeps what the tenant did.
            if integration_rows.change_status(
                conn,
                integration_id,
                Action.PROVIDER_AUTH_FAILED,
                current=Status.ACTIVE,
                verification=record,
                now=now,
                only_if={"credentials_version": version},
            ):
                # the audit event, in this transaction; the actor is the request's token
                audit.record_integration(
                    conn,
                    run.tenant_id,
                    integration_id,
                    action,
                    status_before=Status.ACTIVE.value,
                    status_after=Status.ERROR.value,
                    details={
                        "capability": run.capability,
                        "operation_id": run.operation_id,
                        "error": record.error,
                    },
                    now=now,
                )
                logger.warning(
                    "integration %s moved to error: %s during an operation",
                    integration_id,
                    "stored credentials cannot be opened"
                    if action == audit.INTEGRATION_CREDENTIALS_UNREADABLE
                    else "credentials refused",
                )

    def _apply_early_events(
        self, conn: sa.Connection, attempt: dict[str, Any], object_id: str
    ) -> None:
        """Apply the webhooks about what this try sent that arrived before its end was
        recorded (a provider may call back before it has answered). Skipped for providers
        that send no webhooks: one query fewer on their sends."""
        provider = self.catalog.get(attempt["provider"])
        if provider is None or provider.webhooks is None:
            return
        integration_id = attempt["integration_id"]
        for event in event_rows.waiting_for(conn, integration_id, object_id):
            moved = attempt_rows.move_delivery_status(
                conn, integration_id, object_id, event.status, event.received_at
            )
            if moved:
                event_rows.mark_applied(conn, event.id, moved)

    def _finish(
        self,
        conn: sa.Connection,
        run: _Run,
        attempt: dict[str, Any] | None,
        ended: dict[str, Any] | None,
        refusal: Refusal | None,
        response: DispatchResponse,
    ) -> None:
        """Finish the last attempt (if any) and the operation, in one transaction."""
        if attempt is not None and ended is not None:
            self._finish_attempt(conn, run, attempt, ended, refusal)
        stored = msgspec.to_builtins(response)
        result = stored["data"].get("result")
        if isinstance(result, dict) and result.get("client_secret"):
            # A payment's client secret lets whoever holds it confirm the payment: it is
            # handed out once, in the first response, and not kept (a replay shows null).
            stored["data"]["result"] = {**result, "client_secret": None}
        status = response.data["status"]
        finished = operation_rows.finish(
            conn,
            run.operation_id,
            {
                "status": status,
                "integration_id": response.data["integration_id"],
                "response": stored,
                "completed_at": utcnow(),
            },
            release_key=status == FAILED and response.code in _RETRYABLE_CODES,
        )
        if not finished:
            logger.warning(
                "operation %s ran past its lease and was settled meanwhile; its end is not "
                "recorded over that",
                run.operation_id,
            )

    # -- the answer --------------------------------------------------------------------------

    def _response(
        self,
        run: _Run,
        final: OperationResult | None,
        served_by: str | None,
        attempts: list[dict[str, Any]],
    ) -> DispatchResponse:
        """The operation's answer. With no success, and the key provider unable to open the
        credentials of at least one candidate that was not a stop (``rejected``,
        ``unknown``), it is 503 ``key_provider_unavailable``: the operator's fault, nothing
        was sent on that candidate."""
        capability, operation_id, started = run.capability, run.operation_id, run.started
        key_unavailable = run.key_unavailable
        succeeded = final is not None and final.outcome is OperationOutcome.SUCCEEDED
        ledger_status = _ledger_status(final)
        data = {
            "id": operation_id,
            "capability": capability,
            "status": ledger_status,
            "integration_id": served_by,
            "result": msgspec.to_builtins(final.result) if succeeded and final else None,
            "error": None,
            "attempts": [attempt_view(a) for a in attempts],
            "created_at": isoformat_z(started),
            "completed_at": isoformat_z(utcnow()),
        }
        if succeeded:
            return DispatchResponse(201, True, "Operation completed successfully", data)
        if final is None:
            code, status, message = (
                "no_active_provider",
                409,
                f"No active integration can serve {capability}: check the routing rules and "
                "the integrations they name.",
            )
        elif final.outcome is OperationOutcome.REJECTED:
            code, status, message = (
                "provider_rejected",
                422,
                f"The provider rejected the request: {final.message}",
            )
        elif final.outcome is OperationOutcome.UNKNOWN:
            code, status, message = (
                "provider_outcome_unknown",
                502,
                f"The provider's answer was lost; the operation may have been carried out, so "
                f"no other provider was tried: {final.message}",
            )
        elif key_unavailable:
            code, status, message = (
                KEY_PROVIDER_UNAVAILABLE,
                503,
                f"No integration could serve {capability} now: the key provider could not "
                "open the stored credentials, so nothing was sent on them. The integrations "
                "are unchanged; try again later.",
            )
        else:
            code, status, message = (
                "provider_unavailable",
                502,
                f"No integration could serve {capability} now: {final.message}",
            )
        data["error"] = {"code": code, "message": message}
        return DispatchResponse(status, False, message, data, code=code)


#: Answers after which no provider can have acted: the key is released, so it may retry
#: (a key provider's outage sends nothing either: a retry once it is back runs again).
_RETRYABLE_CODES = frozenset(
    {"no_active_provider", "provider_unavailable", KEY_PROVIDER_UNAVAILABLE}
)


def _ledger_status(final: OperationResult | None) -> str:
    """The operation's status for its last try's result."""
    if final is not None and final.outcome is OperationOutcome.SUCCEEDED:
        return SUCCEEDED
    if final is not None and final.outcome is OperationOutcome.UNKNOWN:
        return OUTCOME_UNKNOWN
    return FAILED
