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
provider_auth_failed   active              error               dispatch (401/403 in a live call)
=====================  ==================  ==================  =====================================

Decisions where the contract is silent: ``disable`` is refused from ``pending_verify`` and
``error``: neither receives operations anyway, and an ``inactive`` row becomes ``active`` on
``activate`` *without* re-verification, so letting unverified rows through ``inactive`` would
skip the credential check. ``DELETE`` (soft) is allowed from every status.
"""

from __future__ import annotations

import enum

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
    PROVIDER_AUTH_FAILED = "provider_auth_failed"


S, A = Status, Action

TRANSITIONS: dict[tuple[Action, Status], Status] = {
    (A.ACTIVATE, S.INACTIVE): S.ACTIVE,
    (A.DISABLE, S.ACTIVE): S.INACTIVE,
    **{(A.CREDENTIALS_CHANGED, status): S.PENDING_VERIFY for status in Status},
    (A.VERIFICATION_ACCEPTED, S.PENDING_VERIFY): S.ACTIVE,
    (A.VERIFICATION_REJECTED, S.PENDING_VERIFY): S.ERROR,
    (A.VERIFICATION_GAVE_UP, S.PENDING_VERIFY): S.ERROR,
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


def allows(action: Action, current: Status | str) -> bool:
    return (action, Status(current)) in TRANSITIONS
