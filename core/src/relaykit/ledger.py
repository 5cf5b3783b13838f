"""The operations ledger: what each operation and each of its tries became, and the rules that
settle what a process left unfinished.

An operation is written ``in_progress`` before its first provider call and each attempt
``in_flight`` before its own (:mod:`relaykit.dispatch`), so a crash leaves the truth in the
database. What an operation's end does to its ``Idempotency-Key``:

=====================  ===================  =========  =====================================
how it ended           operation status     the key    a repeat with the same key
=====================  ===================  =========  =====================================
a provider succeeded   ``succeeded``        kept       replays the answer, no provider call
a provider rejected    ``failed``           kept       replays the answer
no answer (unknown)    ``outcome_unknown``  kept       replays the answer
no usable integration  ``failed``           released   runs again
every try transient    ``failed``           released   runs again
process gone, an       ``outcome_unknown``  kept       409 ``operation_outcome_unknown``
attempt in flight
process gone, nothing  ``failed``           released   runs again
in flight or acted
=====================  ===================  =========  =====================================

A process is presumed gone when its operation is still ``in_progress`` past its lease
(``RELAYKIT_OPERATION_DEADLINE`` plus :data:`LEASE_MARGIN_SECONDS`); the worker settles such
operations (:func:`settle_abandoned`), and so does a repeat of its key. An attempt settled
this way is never sent again by relaykit.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import sqlalchemy as sa

from relaykit.catalog import Catalog
from relaykit.errors import NotFoundError, ValidationError
from relaykit.ids import isoformat_z
from relaykit.pagination import (
    DEFAULT_PER_PAGE,
    Page,
    check_choice,
    check_id,
    check_page,
    is_id,
)
from relaykit.storage import delivery_attempts as attempt_rows
from relaykit.storage import operations as operation_rows
from relaykit.storage import webhook_events as webhook_event_rows
from relaykit.storage.database import Database

IN_PROGRESS = "in_progress"
SUCCEEDED = "succeeded"
FAILED = "failed"
OUTCOME_UNKNOWN = "outcome_unknown"
OPERATION_STATUSES = (IN_PROGRESS, SUCCEEDED, FAILED, OUTCOME_UNKNOWN)
IN_FLIGHT = "in_flight"
ATTEMPT_STATUSES = (IN_FLIGHT, SUCCEEDED, FAILED, OUTCOME_UNKNOWN)
#: Attempt outcomes after which the provider did, or may have done, what was asked.
ACTED = frozenset({"succeeded", "rejected", "unknown", OUTCOME_UNKNOWN})
#: How much longer than the operation deadline an operation's process is waited for.
LEASE_MARGIN_SECONDS = 5.0
#: What an Idempotency-Key may be.
IDEMPOTENCY_KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")
GONE_MESSAGE = (
    "The process running this attempt stopped before it ended; the provider may have acted, "
    "so relaykit does not send it again."
)


class DispatchResponse(msgspec.Struct, frozen=True):
    """What the API answers for an operation: the HTTP status and the envelope's fields."""

    status_code: int
    success: bool
    message: str
    data: dict[str, Any]
    code: str | None = None


def check_idempotency_key(name: str, value: str | None, errors: dict[str, list[str]]) -> None:
    """An Idempotency-Key (the header, or the ledger's filter) must be 1 to 255 visible ASCII
    characters."""
    if value is not None and not IDEMPOTENCY_KEY_PATTERN.match(value):
        errors[name] = [f"The {name} must be 1 to 255 visible ASCII characters."]


def lease_until(now: dt.datetime, deadline_seconds: float) -> dt.datetime:
    """When an operation started at ``now`` is presumed abandoned."""
    return now + dt.timedelta(seconds=deadline_seconds + LEASE_MARGIN_SECONDS)


def attempt_view(row: Mapping[str, Any] | sa.RowMapping) -> dict[str, Any]:
    """A delivery attempt as the API shows it. What the provider's webhooks said became of
    it is absent from an attempt just finished by dispatch (the row has it)."""
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
        "provider_object_id": row.get("provider_object_id"),
        "delivery_status": row.get("delivery_status"),
        "delivery_updated_at": isoformat_z(row.get("delivery_updated_at")),
    }


def operation_view(
    row: Any, attempts: Sequence[Mapping[str, Any] | sa.RowMapping]
) -> dict[str, Any]:
    """An operation as the ledger API shows it: what its answer said, and its attempts."""
    answered = (row.response or {}).get("data") or {}
    return {
        "id": row.id,
        "capability": row.capability,
        "status": row.status,
        "integration_id": row.integration_id,
        "idempotency_key": row.idempotency_key,
        "result": answered.get("result"),
        "error": answered.get("error"),
        "attempts": [attempt_view(a) for a in attempts],
        "created_at": isoformat_z(row.created_at),
        "completed_at": isoformat_z(row.completed_at),
    }


def outcome_unknown_response(view: dict[str, Any]) -> DispatchResponse:
    """The answer for an operation whose process went away while a provider call was in
    flight: it may have been carried out, so it is never sent again."""
    message = (
        "An earlier request with this Idempotency-Key stopped while a provider call was in "
        f"flight; it may have been carried out, so it is not sent again (operation {view['id']})."
    )
    data = {**view, "error": {"code": OUTCOME_UNKNOWN_CODE, "message": message}}
    return DispatchResponse(409, False, message, data, code=OUTCOME_UNKNOWN_CODE)


OUTCOME_UNKNOWN_CODE = "operation_outcome_unknown"


def settle(conn: sa.Connection, row: Any, now: dt.datetime) -> DispatchResponse | None:
    """Settle an operation whose process is gone: its attempts still in flight become
    ``outcome_unknown``; if any provider acted or may have, so does the operation (its key
    kept, answering 409 ``operation_outcome_unknown``); else it failed and its key is
    released. The 409 answer, or ``None`` when the key was released."""
    attempt_rows.settle_in_flight(conn, now=now, message=GONE_MESSAGE, operation_id=row.id)
    attempts = attempt_rows.of_operation(conn, row.id)
    if any(a["outcome"] in ACTED for a in attempts):
        view = operation_view(row, attempts)
        view.update(status=OUTCOME_UNKNOWN, completed_at=isoformat_z(now))
        answer = outcome_unknown_response(view)
        operation_rows.finish(
            conn,
            row.id,
            {
                "status": OUTCOME_UNKNOWN,
                "response": msgspec.to_builtins(answer),
                "completed_at": now,
            },
            release_key=False,
        )
        return answer
    operation_rows.finish(conn, row.id, {"status": FAILED, "completed_at": now}, release_key=True)
    return None


def settle_abandoned(
    conn: sa.Connection, *, now: dt.datetime, deadline_seconds: float, retention_days: float
) -> dict[str, int]:
    """The worker's sweep: attempts in flight past the deadline, operations whose process is
    gone, expired idempotency keys, and operations and webhook events past retention.
    Counts of each."""
    cutoff = now - dt.timedelta(seconds=deadline_seconds + LEASE_MARGIN_SECONDS)
    swept = attempt_rows.settle_in_flight(
        conn, now=now, message=GONE_MESSAGE, started_before=cutoff
    )
    abandoned = operation_rows.abandoned(conn, now)
    for row in abandoned:
        settle(conn, row, now)
    return {
        "attempts": len(swept),
        "operations": len(abandoned),
        "keys": operation_rows.release_expired_keys(conn, now),
        "deleted": operation_rows.delete_created_before(
            conn, now - dt.timedelta(days=retention_days)
        ),
        "webhook_events": webhook_event_rows.delete_received_before(
            conn, now - dt.timedelta(days=retention_days)
        ),
    }


class OperationService:
    """The ledger's reads: ``GET /api/v1/operations`` and ``GET /api/v1/operations/{id}``."""

    def __init__(self, database: Database, catalog: Catalog) -> None:
        self.database = database
        self.catalog = catalog

    async def get(self, tenant_id: str, operation_id: str) -> dict[str, Any]:
        def read(conn: sa.Connection) -> dict[str, Any] | None:
            row = operation_rows.find(conn, tenant_id, operation_id)
            if row is None:
                return None
            return operation_view(row, attempt_rows.of_operation(conn, row.id))

        view = await self.database.read(read) if is_id(operation_id) else None
        if view is None:
            raise NotFoundError("Operation not found.")
        return view

    async def list(
        self,
        tenant_id: str,
        *,
        capability: str | None = None,
        status: str | None = None,
        integration_id: str | None = None,
        idempotency_key: str | None = None,
        page: int = 1,
        per_page: int = DEFAULT_PER_PAGE,
    ) -> Page[dict[str, Any]]:
        """One page of the tenant's operations, newest first."""
        errors: dict[str, list[str]] = {}
        check_choice("status", status, OPERATION_STATUSES, errors)
        check_choice("capability", capability, sorted(self.catalog.contracts), errors)
        check_id("integration_id", integration_id, "an integration", errors)
        check_idempotency_key("idempotency_key", idempotency_key, errors)
        check_page(page, per_page, errors)
        if errors:
            raise ValidationError(errors)

        def read(conn: sa.Connection) -> Page[dict[str, Any]]:
            found = operation_rows.page_of(
                conn,
                tenant_id,
                capability=capability,
                status=status,
                integration_id=integration_id,
                idempotency_key=idempotency_key,
                page=page,
                per_page=per_page,
                view=lambda row: row,
            )
            attempts = attempt_rows.of_operations(conn, [row.id for row in found.items])
            return Page(
                [operation_view(row, attempts.get(row.id, [])) for row in found.items],
                found.total,
                found.page,
                found.per_page,
            )

        return await self.database.read(read)
