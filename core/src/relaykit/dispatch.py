"""Dispatch: one operation through routing, with fallback, idempotency and a record of tries.

``POST /api/v1/operations/{capability}`` lands here. In order:

1. The body is decoded into the capability's input Struct (422 keyed by field otherwise).
2. With an ``Idempotency-Key`` (scoped to the tenant), the operation is recorded as
   ``pending`` first. A repeat of a finished key replays the stored response without calling
   any provider; the same key with another body is a 422; the same key while the first is
   still running is a 409.
3. Routing (:mod:`relaykit.routing`) gives the integrations to try. None: the operation
   fails with ``no_active_provider``.
4. Each try is recorded as a delivery attempt (integration, provider, outcome, provider
   status and code, message, duration; never a credential). ``transient``: next candidate.
   ``auth_failed``: that integration moves to ``error`` (the provider's message in its
   metadata), next candidate. ``rejected`` or ``unknown``: stop and report. Before a
   fallback is tried its status is checked again. A try already under way is never
   interrupted: disabling an integration stops new tries, not one in flight.
5. The operation and its attempts are written in one transaction (statements in
   :mod:`relaykit.storage.operations` and :mod:`relaykit.storage.delivery_attempts`).

The provider sees the same idempotency key on every try of one operation (the client's
key, else the operation id), so a provider that honours keys (Stripe) never does one
request twice.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Mapping
from typing import Any

import httpx
import msgspec
import sqlalchemy as sa

from relaykit.capabilities import decode_input
from relaykit.catalog import Catalog
from relaykit.errors import ConflictError, NotFoundError, RelaykitError, ValidationError
from relaykit.ids import isoformat_z, new_id, utcnow
from relaykit.lifecycle import Action, Status, VerificationRecord
from relaykit.operations import OperationContext, OperationOutcome, OperationResult, run_operation
from relaykit.provider_http import ProviderClients
from relaykit.routing import RouteCandidate, RoutingService
from relaykit.sealing import KeyProvider, SealContext, unseal
from relaykit.settings import Settings
from relaykit.storage import delivery_attempts as attempt_rows
from relaykit.storage import integrations as integration_rows
from relaykit.storage import operations as operation_rows
from relaykit.storage.database import Database, IntegrityError

logger = logging.getLogger("relaykit.dispatch")

IDEMPOTENCY_KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")
IDEMPOTENCY_FIELD = "Idempotency-Key"


class DispatchResponse(msgspec.Struct, frozen=True):
    """What the API answers: the HTTP status and the envelope's fields."""

    status_code: int
    success: bool
    message: str
    data: dict[str, Any]
    code: str | None = None


class IdempotencyConflict(ConflictError):
    """The same key is still being processed (409)."""

    code = "idempotency_conflict"


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        catalog: Catalog,
        key_provider: KeyProvider,
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

    async def aclose(self) -> None:
        await self._clients.aclose()

    # -- the flow ------------------------------------------------------------------------------

    async def dispatch(
        self, tenant_id: str, capability: str, payload: Any, idempotency_key: str | None
    ) -> DispatchResponse:
        contract = self.catalog.contracts.get(capability)
        if contract is None:
            raise NotFoundError(f"Unknown capability {capability}.")
        if idempotency_key is not None and not IDEMPOTENCY_KEY_PATTERN.match(idempotency_key):
            raise ValidationError(
                {
                    IDEMPOTENCY_FIELD: [
                        "The Idempotency-Key must be 1 to 255 visible ASCII characters."
                    ]
                }
            )
        request = decode_input(contract, payload)
        request_hash = hashlib.sha256(
            capability.encode()
            + b"\x00"
            + msgspec.json.encode(msgspec.to_builtins(request), order="sorted")
        ).hexdigest()
        operation_id = new_id()
        started = utcnow()

        begun = await self._begin(
            tenant_id, capability, operation_id, idempotency_key, request_hash, started
        )
        if isinstance(begun, DispatchResponse):
            return begun  # a replay of a finished operation
        candidates = begun

        attempts: list[dict[str, Any]] = []
        auth_failures: list[tuple[str, str]] = []
        final: OperationResult | None = None
        served_by: str | None = None
        for index, candidate in enumerate(candidates):
            if index > 0 and not await self.routing.still_usable(
                tenant_id, candidate.integration_id, capability
            ):
                continue
            result, attempt = await self._try(
                tenant_id,
                capability,
                candidate,
                request,
                operation_id,
                idempotency_key,
                contract.output,
            )
            attempts.append(attempt)
            final = result
            if result.outcome is OperationOutcome.SUCCEEDED:
                served_by = candidate.integration_id
                break
            if result.outcome is OperationOutcome.AUTH_FAILED:
                auth_failures.append((candidate.integration_id, result.message))
                continue
            if result.outcome is OperationOutcome.TRANSIENT:
                continue
            served_by = candidate.integration_id  # rejected or unknown: this one answered
            break

        response = self._response(capability, operation_id, started, final, served_by, attempts)
        await self._finish(
            tenant_id,
            operation_id,
            capability,
            idempotency_key,
            request_hash,
            started,
            response,
            attempts,
            auth_failures,
        )
        return response

    async def _try(
        self,
        tenant_id: str,
        capability: str,
        candidate: RouteCandidate,
        request: msgspec.Struct,
        operation_id: str,
        idempotency_key: str | None,
        output: type[msgspec.Struct],
    ) -> tuple[OperationResult, dict[str, Any]]:
        provider = self.catalog.get(candidate.provider)
        started_at = utcnow()
        clock = time.perf_counter()
        secrets: dict[str, Any] = {}
        if provider is None:
            result = OperationResult.failed(
                OperationOutcome.TRANSIENT, f"the provider {candidate.provider} is not installed"
            )
        else:
            try:
                secrets = await self._open(tenant_id, candidate)
            except RelaykitError as exc:
                result = OperationResult.failed(
                    OperationOutcome.TRANSIENT, f"stored credentials cannot be opened: {exc}"
                )
            else:
                client = self._clients.get(provider)
                ctx = OperationContext(
                    client,
                    str(client.base_url),
                    operation_id=operation_id,
                    idempotency_key=idempotency_key or operation_id,
                )
                result = await run_operation(
                    provider.operations[capability],
                    request,
                    {**candidate.public_credentials, **secrets},
                    ctx,
                    output=output,
                    secrets=secrets,
                )
        duration_ms = round((time.perf_counter() - clock) * 1000, 3)
        attempt = {
            "id": new_id(),
            "tenant_id": tenant_id,
            "operation_id": operation_id,
            "integration_id": candidate.integration_id,
            "provider": candidate.provider,
            "capability": capability,
            "status": "succeeded" if result.outcome is OperationOutcome.SUCCEEDED else "failed",
            "outcome": result.outcome.value,
            "provider_status_code": result.status_code,
            "provider_code": result.provider_code,
            "message": result.message
            or ("OK" if result.outcome is OperationOutcome.SUCCEEDED else ""),
            "duration_ms": duration_ms,
            "started_at": started_at,
            "completed_at": utcnow(),
        }
        logger.info(
            "operation %s try %s on integration %s (%s): %s in %.1f ms",
            operation_id,
            attempt["id"],
            candidate.integration_id,
            candidate.provider,
            result.outcome,
            duration_ms,
        )
        return result, attempt

    async def _open(self, tenant_id: str, candidate: RouteCandidate) -> dict[str, Any]:
        if not candidate.sealed_credentials:
            return {}
        context = SealContext(tenant_id, candidate.integration_id, candidate.provider)
        return await unseal(candidate.sealed_credentials, context, self.key_provider)

    # -- the database side -------------------------------------------------------------------

    async def _begin(
        self,
        tenant_id: str,
        capability: str,
        operation_id: str,
        idempotency_key: str | None,
        request_hash: str,
        started: Any,
    ) -> list[RouteCandidate] | DispatchResponse:
        """Resolve the route; with a key, claim the key first (or replay what it stored)."""
        if idempotency_key is None:
            return await self.routing.candidates(tenant_id, capability)

        def claim(conn: sa.Connection) -> list[RouteCandidate] | DispatchResponse:
            existing = operation_rows.by_idempotency_key(conn, tenant_id, idempotency_key)
            if existing is not None:
                if existing.request_hash != request_hash:
                    raise ValidationError(
                        {IDEMPOTENCY_FIELD: ["This key was already used with a different request."]}
                    )
                if existing.status == "pending" or existing.response is None:
                    raise IdempotencyConflict(
                        "A request with this Idempotency-Key is still being processed."
                    )
                return msgspec.convert(existing.response, DispatchResponse)
            operation_rows.insert(
                conn,
                {
                    "id": operation_id,
                    "tenant_id": tenant_id,
                    "capability": capability,
                    "status": "pending",
                    "integration_id": None,
                    "idempotency_key": idempotency_key,
                    "request_hash": request_hash,
                    "response": None,
                    "created_at": started,
                    "completed_at": None,
                },
            )
            return self.routing.candidates_in(conn, tenant_id, capability)

        try:
            return await self.database.transaction(claim)
        except IntegrityError:
            # Another request claimed the key between our read and insert: it is running.
            raise IdempotencyConflict(
                "A request with this Idempotency-Key is still being processed."
            ) from None

    async def _finish(
        self,
        tenant_id: str,
        operation_id: str,
        capability: str,
        idempotency_key: str | None,
        request_hash: str,
        started: Any,
        response: DispatchResponse,
        attempts: list[dict[str, Any]],
        auth_failures: list[tuple[str, str]],
    ) -> None:
        now = utcnow()
        stored = msgspec.to_builtins(response)
        result = stored["data"].get("result")
        if isinstance(result, dict) and result.get("client_secret"):
            # A payment's client secret lets whoever holds it confirm the payment: it is
            # handed out once, in the first response, and not kept (a replay shows null).
            stored["data"]["result"] = {**result, "client_secret": None}
        values = {
            "status": response.data["status"],
            "integration_id": response.data["integration_id"],
            "response": stored,
            "completed_at": now,
        }

        refusals = [
            (
                integration_id,
                VerificationRecord(
                    outcome="auth_failed",
                    message=message,
                    error=f"The provider refused the credentials during an operation: {message}",
                    operation_id=operation_id,
                    checked_at=isoformat_z(now) or "",
                ),
            )
            for integration_id, message in auth_failures
        ]

        def write(conn: sa.Connection) -> list[str]:
            if idempotency_key is None:
                operation_rows.insert(
                    conn,
                    {
                        "id": operation_id,
                        "tenant_id": tenant_id,
                        "capability": capability,
                        "idempotency_key": None,
                        "request_hash": request_hash,
                        "created_at": started,
                        **values,
                    },
                )
            else:
                operation_rows.complete(conn, operation_id, values)
            attempt_rows.insert(conn, attempts)
            # Only an integration still active moves: one disabled or re-credentialed
            # meanwhile keeps what the tenant did.
            return [
                integration_id
                for integration_id, record in refusals
                if integration_rows.change_status(
                    conn,
                    integration_id,
                    Action.PROVIDER_AUTH_FAILED,
                    current=Status.ACTIVE,
                    verification=record,
                    now=now,
                )
            ]

        for integration_id in await self.database.transaction(write):
            logger.warning(
                "integration %s moved to error: credentials refused during operation %s",
                integration_id,
                operation_id,
            )

    # -- the answer --------------------------------------------------------------------------

    def _response(
        self,
        capability: str,
        operation_id: str,
        started: Any,
        final: OperationResult | None,
        served_by: str | None,
        attempts: list[dict[str, Any]],
    ) -> DispatchResponse:
        succeeded = final is not None and final.outcome is OperationOutcome.SUCCEEDED
        data = {
            "id": operation_id,
            "capability": capability,
            "status": "succeeded" if succeeded else "failed",
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
        else:
            code, status, message = (
                "provider_unavailable",
                502,
                f"No integration could serve {capability} now: {final.message}",
            )
        data["error"] = {"code": code, "message": message}
        return DispatchResponse(status, False, message, data, code=code)


def attempt_view(row: Mapping[str, Any] | sa.RowMapping) -> dict[str, Any]:
    """A delivery attempt as the API shows it."""
    return {
        "id": row["id"],
        "operation_id": row["operation_id"],
        "integration_id": row["integration_id"],
        "provider": row["provider"],
        "capability": row["capability"],
        "status": row["status"],
        "outcome": row["outcome"],
        "provider_status_code": row["provider_status_code"],
        "provider_code": row["provider_code"],
        "message": row["message"],
        "duration_ms": row["duration_ms"],
        "started_at": isoformat_z(row["started_at"]),
        "completed_at": isoformat_z(row["completed_at"]),
    }
