"""The lifecycle table (every action from every status) and the one function that applies it
to a stored integration, on a real database."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa

from relaykit import tenants
from relaykit.errors import ConflictError
from relaykit.ids import new_id
from relaykit.lifecycle import (
    _REFUSALS,
    TRANSITIONS,
    Action,
    Status,
    VerificationRecord,
    next_status,
)
from relaykit.storage import integrations as rows
from relaykit.storage.database import Database
from relaykit.storage.models import integrations

A, S = Action, Status

#: The table in relaykit.lifecycle's docstring, written out again: the code must match it.
DOCUMENTED: dict[tuple[Action, Status], Status] = {
    (A.ACTIVATE, S.INACTIVE): S.ACTIVE,
    (A.DISABLE, S.ACTIVE): S.INACTIVE,
    (A.CREDENTIALS_CHANGED, S.PENDING_VERIFY): S.PENDING_VERIFY,
    (A.CREDENTIALS_CHANGED, S.ACTIVE): S.PENDING_VERIFY,
    (A.CREDENTIALS_CHANGED, S.INACTIVE): S.PENDING_VERIFY,
    (A.CREDENTIALS_CHANGED, S.ERROR): S.PENDING_VERIFY,
    (A.VERIFICATION_ACCEPTED, S.PENDING_VERIFY): S.ACTIVE,
    (A.VERIFICATION_REJECTED, S.PENDING_VERIFY): S.ERROR,
    (A.VERIFICATION_GAVE_UP, S.PENDING_VERIFY): S.ERROR,
    (A.VERIFICATION_DEFERRED, S.PENDING_VERIFY): S.PENDING_VERIFY,
    (A.PROVIDER_AUTH_FAILED, S.ACTIVE): S.ERROR,
}

EVERY_PAIR = list(itertools.product(Action, Status))
NOW = dt.datetime(2026, 1, 10, 8, 45, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(minutes=5)


# -- the table -------------------------------------------------------------------------------


def test_the_table_is_the_documented_one() -> None:
    assert TRANSITIONS == DOCUMENTED


@pytest.mark.parametrize(("action", "current"), EVERY_PAIR, ids=str)
def test_next_status_moves_or_says_why_not(action: Action, current: Status) -> None:
    if (action, current) in DOCUMENTED:
        assert next_status(action, current) is DOCUMENTED[(action, current)]
        assert next_status(action, current.value) is DOCUMENTED[(action, current)]  # text too
        return
    with pytest.raises(ConflictError) as refused:
        next_status(action, current)
    expected = _REFUSALS.get(
        (action, current), f"An integration in status {current} cannot be moved by {action}."
    )
    assert str(refused.value) == expected


def test_every_refusal_is_for_a_move_the_table_lacks() -> None:
    assert _REFUSALS  # not vacuous
    assert not set(_REFUSALS) & set(TRANSITIONS)


@pytest.mark.parametrize("action", [A.ACTIVATE, A.DISABLE])
def test_a_tenant_refused_a_move_is_told_why(action: Action) -> None:
    """The tenant's own moves (POST activate/disable) never answer with the generic text."""
    refused = [status for status in Status if (action, status) not in TRANSITIONS]
    assert refused
    assert all((action, status) in _REFUSALS for status in refused)


def test_an_unknown_status_is_not_a_status() -> None:
    with pytest.raises(ValueError):
        next_status(A.ACTIVATE, "paused")


def test_a_verification_record_leaves_out_what_does_not_apply() -> None:
    record = VerificationRecord(outcome="accepted", message="OK", checked_at="2026-01-10T08:45:00Z")
    assert msgspec.json.decode(msgspec.json.encode(record)) == {
        "outcome": "accepted",
        "message": "OK",
        "checked_at": "2026-01-10T08:45:00Z",
    }
    refusal = msgspec.structs.replace(record, outcome="auth_failed", operation_id="op1")
    assert msgspec.to_builtins(refusal) == {
        "outcome": "auth_failed",
        "message": "OK",
        "checked_at": "2026-01-10T08:45:00Z",
        "operation_id": "op1",
    }


# -- change_status on a stored row -----------------------------------------------------------


def insert(database: Database, status: Status, **values: Any) -> str:
    """A live integration row in ``status`` (written as it stands, to start a test from)."""
    tenant_id = database.transaction_blocking(tenants.create_tenant, f"t-{new_id()}").id
    integration_id = new_id()
    row = {
        "id": integration_id,
        "tenant_id": tenant_id,
        "provider": "acme",
        "category": "communication",
        "status": status.value,
        "enabled_capabilities": ["send_sms"],
        "public_credentials": {"account": "a1"},
        "sealed_credentials": None,
        "credentials_version": 1,
        "metadata": {},
        "verification": None,
        "verify_attempts": 0,
        "next_verify_at": None,
        "verified_at": None,
        "created_at": NOW,
        "updated_at": NOW,
        "deleted_at": None,
        **values,
    }
    assert database.transaction_blocking(rows.insert_if_new, row)
    return integration_id


def stored(database: Database, integration_id: str) -> sa.Row[Any]:
    return database.read_blocking(
        lambda conn: conn.execute(
            sa.select(integrations).where(integrations.c.id == integration_id)
        ).one()
    )


def change(database: Database, integration_id: str, action: Action, **kwargs: Any) -> bool:
    kwargs.setdefault("verification", "keep")
    return database.transaction_blocking(
        rows.change_status, integration_id, action, now=LATER, **kwargs
    )


def test_an_allowed_move_is_applied_with_its_other_columns(database: Database) -> None:
    integration_id = insert(database, S.ERROR, credentials_version=3)
    assert change(
        database,
        integration_id,
        A.CREDENTIALS_CHANGED,
        current=S.ERROR,
        also={"credentials_version": 4, "next_verify_at": LATER},
    )
    row = stored(database, integration_id)
    assert row.status == "pending_verify"
    assert row.credentials_version == 4 and row.next_verify_at == LATER
    assert row.updated_at == LATER


def test_a_move_the_table_lacks_is_refused_and_changes_nothing(database: Database) -> None:
    integration_id = insert(database, S.ERROR)
    with pytest.raises(ConflictError, match="update its credentials with PATCH"):
        change(database, integration_id, A.ACTIVATE, current=S.ERROR)
    row = stored(database, integration_id)
    assert row.status == "error" and row.updated_at == NOW


def test_a_row_no_longer_in_the_status_seen_is_not_moved(database: Database) -> None:
    integration_id = insert(database, S.ACTIVE)  # the caller saw it inactive; it moved since
    assert not change(database, integration_id, A.ACTIVATE, current=S.INACTIVE)
    row = stored(database, integration_id)
    assert row.status == "active" and row.updated_at == NOW


def test_a_row_that_no_longer_matches_only_if_is_not_moved(database: Database) -> None:
    integration_id = insert(database, S.PENDING_VERIFY, credentials_version=2)
    assert not change(
        database,
        integration_id,
        A.VERIFICATION_ACCEPTED,
        current=S.PENDING_VERIFY,
        only_if={"credentials_version": 1},  # the credentials checked were replaced
    )
    row = stored(database, integration_id)
    assert row.status == "pending_verify" and row.updated_at == NOW
    assert change(
        database,
        integration_id,
        A.VERIFICATION_ACCEPTED,
        current=S.PENDING_VERIFY,
        only_if={"credentials_version": 2},
    )
    assert stored(database, integration_id).status == "active"


@pytest.mark.parametrize("status", list(Status), ids=str)
def test_a_deleted_row_is_never_touched(database: Database, status: Status) -> None:
    integration_id = insert(database, status)
    tenant_id = stored(database, integration_id).tenant_id
    assert database.transaction_blocking(rows.soft_delete, tenant_id, integration_id, NOW)
    assert not change(database, integration_id, A.CREDENTIALS_CHANGED, current=status)
    assert not database.transaction_blocking(
        rows.update_fields, integration_id, {"metadata": {"x": "1"}}
    )
    row = stored(database, integration_id)
    assert row.status == status.value and row.metadata == {} and row.deleted_at == NOW


def test_update_fields_does_not_change_the_status(database: Database) -> None:
    integration_id = insert(database, S.ACTIVE)
    with pytest.raises(ValueError, match="change_status"):
        database.transaction_blocking(rows.update_fields, integration_id, {"status": "error"})
    assert stored(database, integration_id).status == "active"


def test_keep_leaves_the_verification_and_none_clears_it(database: Database) -> None:
    record = VerificationRecord(
        outcome="accepted", message="OK", checked_at="2026-01-10T08:45:00Z", attempts=1
    )
    integration_id = insert(database, S.ACTIVE, verification=record)
    # stored in the record's one shape: the fields left at None are not written as nulls
    kept = {
        "outcome": "accepted",
        "message": "OK",
        "checked_at": "2026-01-10T08:45:00Z",
        "attempts": 1,
    }
    assert stored(database, integration_id).verification == kept

    assert change(database, integration_id, A.DISABLE, current=S.ACTIVE, verification="keep")
    row = stored(database, integration_id)
    assert row.status == "inactive" and row.verification == kept

    assert change(database, integration_id, A.ACTIVATE, current=S.INACTIVE, verification=None)
    row = stored(database, integration_id)
    assert row.status == "active" and row.verification is None


def test_a_new_record_replaces_the_old(database: Database) -> None:
    integration_id = insert(database, S.ACTIVE)
    refusal = VerificationRecord(
        outcome="auth_failed",
        message="invalid key",
        checked_at="2026-01-10T08:50:00Z",
        error="refused during an operation",
        operation_id="op1",
    )
    assert change(
        database, integration_id, A.PROVIDER_AUTH_FAILED, current=S.ACTIVE, verification=refusal
    )
    row = stored(database, integration_id)
    assert row.status == "error"
    assert row.verification == msgspec.to_builtins(refusal)
    assert "attempts" not in row.verification
