"""An integration's lifecycle: its statuses and the one table of allowed moves.

Every status change in relaykit goes through :func:`next_status`; a move the table does not
hold is a :class:`~relaykit.errors.ConflictError` (409) whose message says why.

=====================  ==================  ==================  =====================================
action                 from                to                  who
=====================  ==================  ==================  =====================================
activate               inactive            active              tenant (``POST /{id}/activate``)
disable                active              inactive            tenant (``POST /{id}/disable``)
credentials_changed    any                 pending_verify      tenant (``PATCH`` with credentials)
verification_accepted  pending_verify      active              verification worker
verification_rejected  pending_verify      error               verification worker
verification_gave_up   pending_verify      error               verification worker (max attempts)
verification_deferred  pending_verify      pending_verify      verification worker (retry later)
provider_auth_failed   active              error               dispatch (401/403 in a live call)
=====================  ==================  ==================  =====================================

Decisions where the contract is silent: ``disable`` is refused from ``pending_verify`` and
``error``: neither receives operations anyway, and an ``inactive`` row becomes ``active`` on
``activate`` *without* re-verification, so letting unverified rows through ``inactive`` would
skip the credential check. ``DELETE`` (soft) is allowed from every status.

Each move records what the check that caused it found, as one :class:`VerificationRecord`
(shown to the tenant under ``metadata.verification``): the worker's checks and a refusal
of the credentials during an operation write the same shape.
"""

from __future__ import annotations

import enum

import msgspec

from relaykit.errors import ConflictError


class Status(enum.StrEnum):
    PENDING_VERIFY = "pending_verify"
    ACTIVE = "active"
    INACTIVE = "inactive"
    ERROR = "error"


class Action(enum.StrEnum):
    ACTIVATE = "activate"
    DISABLE = "disable"
    CREDENTIALS_CHANGED = "credentials_changed"
    VERIFICATION_ACCEPTED = "verification_accepted"
    VERIFICATION_REJECTED = "verification_rejected"
    VERIFICATION_GAVE_UP = "verification_gave_up"
    VERIFICATION_DEFERRED = "verification_deferred"
    PROVIDER_AUTH_FAILED = "provider_auth_failed"


S, A = Status, Action

TRANSITIONS: dict[tuple[Action, Status], Status] = {
    (A.ACTIVATE, S.INACTIVE): S.ACTIVE,
    (A.DISABLE, S.ACTIVE): S.INACTIVE,
    **{(A.CREDENTIALS_CHANGED, status): S.PENDING_VERIFY for status in Status},
    (A.VERIFICATION_ACCEPTED, S.PENDING_VERIFY): S.ACTIVE,
    (A.VERIFICATION_REJECTED, S.PENDING_VERIFY): S.ERROR,
    (A.VERIFICATION_GAVE_UP, S.PENDING_VERIFY): S.ERROR,
    (A.VERIFICATION_DEFERRED, S.PENDING_VERIFY): S.PENDING_VERIFY,
    (A.PROVIDER_AUTH_FAILED, S.ACTIVE): S.ERROR,
}

# Why a tenant's move is refused, by (action, current status); the 409's message.
_REFUSALS: dict[tuple[Action, Status], str] = {
    (A.ACTIVATE, S.ACTIVE): "The integration is already active.",
    (A.ACTIVATE, S.PENDING_VERIFY): (
        "The integration is awaiting credential verification; it becomes active by itself "
        "once its credentials are verified."
    ),
    (A.ACTIVATE, S.ERROR): (
        "The integration is in error; update its credentials with PATCH to verify them again."
    ),
    (A.DISABLE, S.INACTIVE): "The integration is already inactive.",
    (A.DISABLE, S.PENDING_VERIFY): (
        "Only an active integration can be disabled; this one is awaiting credential "
        "verification and receives no operations until it is verified."
    ),
    (A.DISABLE, S.ERROR): (
        "Only an active integration can be disabled; this one is in error and receives no "
        "operations."
    ),
}


def next_status(action: Action, current: Status | str) -> Status:
    """The status ``action`` moves an integration in ``current`` to, or a 409 saying why not."""
    current = Status(current)
    try:
        return TRANSITIONS[(action, current)]
    except KeyError:
        reason = _REFUSALS.get(
            (action, current), f"An integration in status {current} cannot be moved by {action}."
        )
        raise ConflictError(reason) from None


class VerificationRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What relaykit last concluded about an integration's credentials, and when.

    ``outcome`` is the check's (``accepted``, ``rejected``, ``transient``),
    ``auth_failed`` for credentials a provider refused during an operation, or
    ``credentials_unreadable`` for stored credentials an operation could not open;
    ``message`` is the provider's (or relaykit's) own words. Fields that do not apply are
    left out.
    """

    outcome: str
    message: str
    checked_at: str
    #: checks counted so far (the worker's)
    attempts: int | None = None
    #: the provider's HTTP status, when it answered
    provider_status: int | None = None
    #: why the integration is in ``error`` (rejected, gave up, refused in an operation)
    error: str | None = None
    #: a transient failure's message, and when the next check is due
    last_error: str | None = None
    next_attempt_at: str | None = None
    #: the operation whose provider call refused the credentials
    operation_id: str | None = None
