"""The audit trail: who changed what, when, recorded in the transaction of the change.

Every change to a tenant's configuration appends one event to the tenant's chain (the
``audit_events`` table, :mod:`relaykit.storage.audit`): integrations created, re-credentialed,
edited, verified or failed, disabled, activated, deleted, moved to ``error`` by a live
operation; routing rules created, changed, deleted; tokens created and revoked. Changes no
tenant owns (key rotation and rewrap) go to the ``system`` chain. Each event names its actor
(the request's token id, ``worker`` or ``cli``: :data:`relaykit.context.ACTOR`), its request id,
the resource, the status before and after, and ``details`` that name what changed, never a
credential's value.

Each chain is hash-linked: ``seq`` counts from 1, ``prev_digest`` is the digest of the event
before (64 zeros for the first), ``digest`` the SHA-256 of the event's canonical form
(:func:`relaykit.storage.audit.canonical`). :func:`verify` walks the chains and reports the
first broken link of each (``relaykit audit verify``). docs/audit.md is the guide.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import sqlalchemy as sa

from relaykit.context import ACTOR, REQUEST_ID, WORKER_ACTOR
from relaykit.errors import NotFoundError, ValidationError
from relaykit.ids import utcnow
from relaykit.lifecycle import Action, Status, VerificationRecord, next_status
from relaykit.pagination import DEFAULT_PER_PAGE, Page, check_choice, check_id, check_page, is_id
from relaykit.storage import audit as rows
from relaykit.storage.audit import SYSTEM_CHAIN, ZERO_DIGEST, digest_of
from relaykit.storage.database import Database, json_value, timestamp_text
from relaykit.wire import AuditEvent

__all__ = [
    "ACTIONS",
    "SYSTEM_CHAIN",
    "ZERO_DIGEST",
    "AuditService",
    "Broken",
    "ChainReport",
    "record",
    "verify",
]

# -- the actions ----------------------------------------------------------------------------

INTEGRATION_CREATED = "integration.created"
INTEGRATION_CREDENTIALS_REPLACED = "integration.credentials_replaced"
INTEGRATION_UPDATED = "integration.updated"
INTEGRATION_VERIFIED = "integration.verified"
INTEGRATION_VERIFICATION_FAILED = "integration.verification_failed"
INTEGRATION_DISABLED = "integration.disabled"
INTEGRATION_ACTIVATED = "integration.activated"
INTEGRATION_DELETED = "integration.deleted"
INTEGRATION_PROVIDER_REFUSED = "integration.provider_refused"
INTEGRATION_CREDENTIALS_UNREADABLE = "integration.credentials_unreadable"
ROUTING_RULE_CREATED = "routing_rule.created"
ROUTING_RULE_UPDATED = "routing_rule.updated"
ROUTING_RULE_DELETED = "routing_rule.deleted"
TOKEN_CREATED = "token.created"  # noqa: S105 (an action's name)
TOKEN_REVOKED = "token.revoked"  # noqa: S105
KEYS_ROTATED = "keys.rotated"
KEYS_REWRAPPED = "keys.rewrapped"
KEYS_RETIRED = "keys.retired"

#: Every action an event can carry (the list's ``action`` filter takes these).
ACTIONS = (
    INTEGRATION_CREATED,
    INTEGRATION_CREDENTIALS_REPLACED,
    INTEGRATION_UPDATED,
    INTEGRATION_VERIFIED,
    INTEGRATION_VERIFICATION_FAILED,
    INTEGRATION_DISABLED,
    INTEGRATION_ACTIVATED,
    INTEGRATION_DELETED,
    INTEGRATION_PROVIDER_REFUSED,
    INTEGRATION_CREDENTIALS_UNREADABLE,
    ROUTING_RULE_CREATED,
    ROUTING_RULE_UPDATED,
    ROUTING_RULE_DELETED,
    TOKEN_CREATED,
    TOKEN_REVOKED,
    KEYS_ROTATED,
    KEYS_REWRAPPED,
    KEYS_RETIRED,
)

#: The longest request id an event keeps (the column's width).
REQUEST_ID_LIMIT = 128
ACTOR_LIMIT = 63
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# -- recording ------------------------------------------------------------------------------


def record(
    conn: sa.Connection,
    *,
    tenant_id: str | None,
    action: str,
    resource_type: str,
    resource_id: str | None = None,
    integration_id: str | None = None,
    status_before: str | None = None,
    status_after: str | None = None,
    details: Mapping[str, Any] | None = None,
    actor: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Append one event in the caller's transaction (so it commits, or not, with the change
    it records). The actor and the request id come from :mod:`relaykit.context` unless
    ``actor`` is given; ``tenant_id=None`` is the ``system`` chain. What was stored."""
    request_id = REQUEST_ID.get()
    return rows.append(
        conn,
        tenant_id=tenant_id,
        action=action,
        actor=(actor or ACTOR.get())[:ACTOR_LIMIT],
        request_id=request_id[:REQUEST_ID_LIMIT] if request_id is not None else None,
        resource_type=resource_type,
        resource_id=resource_id,
        integration_id=integration_id,
        status_before=status_before,
        status_after=status_after,
        details=details or {},
        created_at=now or utcnow(),
    )


def record_integration(
    conn: sa.Connection,
    tenant_id: str,
    integration_id: str,
    action: str,
    *,
    status_before: str | None = None,
    status_after: str | None = None,
    details: Mapping[str, Any] | None = None,
    actor: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """:func:`record` for an integration's own event (the integration is the resource)."""
    return record(
        conn,
        tenant_id=tenant_id,
        action=action,
        resource_type="integration",
        resource_id=integration_id,
        integration_id=integration_id,
        status_before=status_before,
        status_after=status_after,
        details=details,
        actor=actor,
        now=now,
    )


def record_verification(
    conn: sa.Connection,
    tenant_id: str,
    integration_id: str,
    action: Action,
    verification: VerificationRecord,
    now: dt.datetime,
) -> None:
    """The worker's event for a check's outcome once applied: verified, or failed
    (rejected, gave up). A deferred retry records nothing: a provider that is down would
    flood the trail with one event per retry."""
    if action is Action.VERIFICATION_DEFERRED:
        return
    details: dict[str, Any] = {"outcome": verification.outcome}
    if verification.attempts is not None:
        details["attempts"] = verification.attempts
    if verification.provider_status is not None:
        details["provider_status"] = verification.provider_status
    if action is Action.VERIFICATION_GAVE_UP:
        details["gave_up"] = True
    if verification.error is not None:
        details["error"] = verification.error
    record_integration(
        conn,
        tenant_id,
        integration_id,
        INTEGRATION_VERIFIED
        if action is Action.VERIFICATION_ACCEPTED
        else INTEGRATION_VERIFICATION_FAILED,
        status_before=Status.PENDING_VERIFY.value,
        status_after=next_status(action, Status.PENDING_VERIFY).value,
        details=details,
        actor=WORKER_ACTOR,
        now=now,
    )


def changed_keys(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """The keys whose value differs between two objects (added and removed ones included),
    sorted: what an event says changed in an object whose values it does not repeat."""
    return sorted(key for key in {*before, *after} if before.get(key) != after.get(key))


# -- reading --------------------------------------------------------------------------------


def _view(values: Sequence[Any]) -> AuditEvent:
    (
        event_id,
        action,
        actor,
        request_id,
        resource_type,
        resource_id,
        integration_id,
        status_before,
        status_after,
        details,
        created_at,
        seq,
        prev_digest,
        digest,
    ) = values
    return AuditEvent(
        id=event_id,
        action=action,
        actor=actor,
        request_id=request_id,
        resource_type=resource_type,
        resource_id=resource_id,
        integration_id=integration_id,
        status_before=status_before,
        status_after=status_after,
        details=json_value(details) or {},
        created_at=timestamp_text(created_at) or "",
        seq=int(seq),
        prev_digest=prev_digest,
        digest=digest,
    )


def parse_time(name: str, value: str | None, errors: dict[str, list[str]]) -> dt.datetime | None:
    """A ``since``/``until`` filter: an ISO 8601 timestamp (``2026-01-10T08:45:00Z``; one
    without an offset is UTC), or a problem added to ``errors``."""
    if value is None:
        return None
    try:
        if len(value) > 64:
            raise ValueError(value)
        parsed = dt.datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        # in UTC here: an offset that moves it past year 1 or 9999 is a bad filter, not a 500
        return parsed.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        errors[name] = [f"The {name} must be an ISO 8601 timestamp, such as 2026-01-10T08:45:00Z."]
        return None


class AuditService:
    """The trail's reads: ``GET /api/v1/audit-events`` and ``…/integrations/{id}/events``."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def list(
        self,
        tenant_id: str,
        *,
        integration_id: str | None = None,
        action: str | None = None,
        actor: str | None = None,
        since: str | None = None,
        until: str | None = None,
        page: int = 1,
        per_page: int = DEFAULT_PER_PAGE,
    ) -> Page[AuditEvent]:
        """One page of the tenant's events, newest first."""
        errors: dict[str, list[str]] = {}
        check_id("integration_id", integration_id, "an integration", errors)
        check_choice("action", action, ACTIONS, errors)
        if actor is not None and (len(actor) > ACTOR_LIMIT or _CONTROL.search(actor)):
            errors["actor"] = [
                f"The actor must be at most {ACTOR_LIMIT} characters, without control ones."
            ]
        start = parse_time("since", since, errors)
        end = parse_time("until", until, errors)
        if start is not None and end is not None and end < start:
            errors["until"] = ["The until must not be before the since."]
        check_page(page, per_page, errors)
        if errors:
            raise ValidationError(errors)
        total, found = await rows.view_page(
            self.database,
            tenant_id,
            integration_id=integration_id,
            action=action,
            actor=actor,
            since=start,
            until=end,
            page=page,
            per_page=per_page,
        )
        return Page([_view(row) for row in found], total, page, per_page)

    async def integration_events(
        self,
        tenant_id: str,
        integration_id: str,
        *,
        page: int = 1,
        per_page: int = DEFAULT_PER_PAGE,
    ) -> Page[AuditEvent]:
        """One page of one integration's events, newest first: the tenant's integration,
        deleted ones included (their trail outlives them); else a 404."""
        check_page(page, per_page)
        if not is_id(integration_id) or not await rows.integration_known(
            self.database, tenant_id, integration_id
        ):
            raise NotFoundError("Integration not found.")
        return await self.list(
            tenant_id, integration_id=integration_id, page=page, per_page=per_page
        )


# -- verifying ------------------------------------------------------------------------------


class Broken(msgspec.Struct, frozen=True):
    """The first broken link of a chain: the event, and what is wrong with it."""

    event_id: str
    seq: int
    problem: str


class ChainReport(msgspec.Struct, frozen=True):
    """One chain as :func:`verify` found it: its events, its head, its first broken link."""

    chain: str
    events: int
    head_seq: int
    head_digest: str
    broken: Broken | None


def verify_chain(conn: sa.Connection, chain: str) -> ChainReport:
    """Walk ``chain`` in ``seq`` order: each event must carry the next ``seq``, the digest of
    the one before as ``prev_digest``, and a ``digest`` that is its own. Stops at the first
    broken link. An event cut from the chain's end leaves no broken link; keep the head
    digests it reports somewhere else to catch that."""
    expected_seq, expected_prev = 1, ZERO_DIGEST
    events, head_digest, broken = 0, ZERO_DIGEST, None
    for event in rows.walk(conn, chain):
        events += 1
        problem = None
        if event["seq"] != expected_seq:
            problem = f"seq gap: expected seq {expected_seq}, found {event['seq']}"
        elif event["prev_digest"] != expected_prev:
            problem = "prev_digest mismatch: it is not the digest of the event before"
        elif digest_of(event) != event["digest"]:
            problem = "digest mismatch: the event was changed after it was written"
        elif event["chain"] != (event["tenant_id"] or SYSTEM_CHAIN):
            problem = "chain mismatch: the event is not its tenant's"
        if problem is not None:
            broken = Broken(event["id"], int(event["seq"]), problem)
            break
        expected_seq, expected_prev = int(event["seq"]) + 1, event["digest"]
        head_digest = event["digest"]
    return ChainReport(chain, events, expected_seq - 1, head_digest, broken)


def verify(conn: sa.Connection, chain: str | None = None) -> list[ChainReport]:
    """Every chain's report (or ``chain``'s alone), in chain order."""
    names = [chain] if chain is not None else rows.chains(conn)
    return [verify_chain(conn, name) for name in names]
