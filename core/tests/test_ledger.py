"""The operations ledger in the core: write-ahead attempts, what an operation's end does to
its key, what a dead process leaves and how it is settled, the deadline, and a database that
fails mid-operation (a real failure: a trigger raising inside the statement)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import anyio
import httpx
import pytest
import sqlalchemy as sa

from relaykit.dispatch import IdempotencyConflict, LedgerUnavailable, OperationExpired
from relaykit.ids import new_id, utcnow
from relaykit.keys import KeySet, custody
from relaykit.ledger import OperationService, settle_abandoned
from relaykit.settings import Settings
from relaykit.storage.database import Database, open_database
from relaykit.storage.models import delivery_attempts, operations

from .providers_for_tests import mark_active
from .test_dispatch import MESSAGE, SMS, Stage, anyio_backend, failing, stage

__all__ = ["anyio_backend", "stage"]  # fixtures shared with test_dispatch

pytestmark = pytest.mark.anyio


def rows(database: Database, table: sa.Table) -> list[Any]:
    return database.read_blocking(lambda conn: conn.execute(sa.select(table)).all())


async def test_the_attempt_is_committed_before_the_provider_is_called(
    stage: Stage, settings: Settings
) -> None:
    await stage.primary_with_fallback()
    observer = open_database(settings, migrate=False)  # another process looking at the ledger
    seen: list[tuple[Any, ...]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        [operation] = rows(observer, operations)
        [attempt] = rows(observer, delivery_attempts)
        seen.append((operation.status, attempt.status, attempt.outcome, attempt.completed_at))
        return httpx.Response(201, json={"sid": "m-1"})

    stage.answers["alpha"] = answer
    try:
        response = await stage.send()
    finally:
        observer.dispose()
    assert seen == [("in_progress", "in_flight", None, None)]
    assert response.status_code == 201
    [attempt] = await stage.attempts()
    assert (attempt["status"], attempt["outcome"]) == ("succeeded", "succeeded")


async def test_the_ledger_lists_and_shows_operations(stage: Stage) -> None:
    alpha, bravo = await stage.primary_with_fallback()
    stage.answers["alpha"] = failing(503, "down")
    first = await stage.send(key="k-1")
    second = await stage.send()
    ledger = OperationService(stage.database, stage.dispatcher.catalog)
    page = await ledger.list(stage.tenant_id)
    assert [op["id"] for op in page.items] == [second.data["id"], first.data["id"]]  # newest first
    shown = await ledger.get(stage.tenant_id, first.data["id"])
    assert shown["status"] == "succeeded" and shown["integration_id"] == bravo
    assert shown["idempotency_key"] == "k-1"
    assert [(a["integration_id"], a["outcome"]) for a in shown["attempts"]] == [
        (alpha, "transient"),
        (bravo, "succeeded"),
    ]
    assert (await ledger.list(stage.tenant_id, idempotency_key="k-1")).total == 1
    assert (await ledger.list(stage.tenant_id, status="failed")).total == 0
    attempts = await stage.deliveries.list(stage.tenant_id, operation_id=first.data["id"])
    assert attempts.total == 2


# -- a process that is gone -------------------------------------------------------------------


def abandoned(
    stage: Stage, integration_id: str, key: str, *, attempt: str | None, lease_over: bool = True
) -> str:
    """An operation a dead process left ``in_progress`` under ``key``, with one attempt in
    the given status (or none), its lease over or not."""
    now = utcnow()
    operation_id = new_id()
    request_hash = stage_hash(stage, key)
    values = {
        "id": operation_id,
        "tenant_id": stage.tenant_id,
        "capability": SMS,
        "status": "in_progress",
        "integration_id": None,
        "idempotency_key": key,
        "request_hash": request_hash,
        "response": None,
        "created_at": now - dt.timedelta(seconds=120),
        "completed_at": None,
        "lease_expires_at": now + dt.timedelta(seconds=-1 if lease_over else 60),
        "key_expires_at": now + dt.timedelta(hours=1),
    }

    def write(conn: sa.Connection) -> None:
        conn.execute(operations.insert(), values)
        if attempt is not None:
            conn.execute(
                delivery_attempts.insert(),
                {
                    "id": new_id(),
                    "tenant_id": stage.tenant_id,
                    "operation_id": operation_id,
                    "integration_id": integration_id,
                    "provider": "alpha",
                    "capability": SMS,
                    "status": attempt,
                    "outcome": None if attempt == "in_flight" else "transient",
                    "message": "",
                    "started_at": now - dt.timedelta(seconds=119),
                    "completed_at": None if attempt == "in_flight" else now,
                    "duration_ms": None if attempt == "in_flight" else 1.0,
                },
            )

    stage.database.transaction_blocking(write)
    return operation_id


def stage_hash(stage: Stage, key: str) -> str:
    """The request hash the dispatcher gives MESSAGE (found by sending it once elsewhere)."""
    import hashlib

    import msgspec

    from relaykit.capabilities import decode_input

    request = decode_input(stage.dispatcher.catalog.contracts[SMS], MESSAGE)
    return hashlib.sha256(
        SMS.encode() + b"\x00" + msgspec.json.encode(msgspec.to_builtins(request), order="sorted")
    ).hexdigest()


async def test_a_dead_processs_attempt_in_flight_is_never_sent_again(stage: Stage) -> None:
    alpha, _ = await stage.primary_with_fallback()
    dead = abandoned(stage, alpha, "k-dead", attempt="in_flight")
    response = await stage.send(key="k-dead")
    assert (response.status_code, response.code) == (409, "operation_outcome_unknown")
    assert response.data["id"] == dead
    assert stage.calls == []
    ledger = OperationService(stage.database, stage.dispatcher.catalog)
    settled = await ledger.get(stage.tenant_id, dead)
    assert settled["status"] == "outcome_unknown"
    assert [a["outcome"] for a in settled["attempts"]] == ["outcome_unknown"]
    again = await stage.send(key="k-dead")  # the key is kept: the same answer, no call
    assert again == response and stage.calls == []


@pytest.mark.parametrize("attempt", [None, "failed"])
async def test_a_dead_process_that_sent_nothing_lets_the_key_run_again(
    stage: Stage, attempt: str | None
) -> None:
    alpha, _ = await stage.primary_with_fallback()
    dead = abandoned(stage, alpha, "k-quiet", attempt=attempt)
    response = await stage.send(key="k-quiet")
    assert response.status_code == 201 and response.data["id"] != dead
    assert stage.called() == ["alpha"]
    ledger = OperationService(stage.database, stage.dispatcher.catalog)
    assert (await ledger.get(stage.tenant_id, dead))["status"] == "failed"


async def test_a_key_whose_process_may_still_run_is_a_conflict(stage: Stage) -> None:
    alpha, _ = await stage.primary_with_fallback()
    abandoned(stage, alpha, "k-live", attempt="in_flight", lease_over=False)
    with pytest.raises(IdempotencyConflict, match="still being processed"):
        await stage.send(key="k-live")
    assert stage.calls == []


async def test_the_sweep_settles_what_dead_processes_left(stage: Stage) -> None:
    alpha, _ = await stage.primary_with_fallback()
    sent = abandoned(stage, alpha, "k-a", attempt="in_flight")
    quiet = abandoned(stage, alpha, "k-b", attempt=None)
    counts = stage.database.transaction_blocking(
        settle_abandoned, now=utcnow(), deadline_seconds=60, retention_days=90
    )
    assert counts["operations"] == 2 and counts["attempts"] == 1
    ledger = OperationService(stage.database, stage.dispatcher.catalog)
    assert (await ledger.get(stage.tenant_id, sent))["status"] == "outcome_unknown"
    assert (await ledger.get(stage.tenant_id, quiet))["status"] == "failed"
    replay = await stage.send(key="k-a")
    assert replay.code == "operation_outcome_unknown" and stage.calls == []
    fresh = await stage.send(key="k-b")  # released by the sweep
    assert fresh.status_code == 201 and stage.called() == ["alpha"]


async def test_keys_expire_and_old_operations_go(stage: Stage) -> None:
    await stage.primary_with_fallback()
    first = await stage.send(key="k-old")
    later = utcnow() + dt.timedelta(days=2)
    counts = stage.database.transaction_blocking(
        settle_abandoned, now=later, deadline_seconds=60, retention_days=90
    )
    assert counts["keys"] == 1
    second = await stage.send(key="k-old")  # expired: a new operation, sent again
    assert second.data["id"] != first.data["id"] and stage.called() == ["alpha", "alpha"]
    counts = stage.database.transaction_blocking(
        settle_abandoned,
        now=utcnow() + dt.timedelta(days=91),
        deadline_seconds=60,
        retention_days=90,
    )
    assert counts["deleted"] == 2
    assert rows(stage.database, operations) == [] and rows(stage.database, delivery_attempts) == []


async def test_no_try_starts_past_the_operation_deadline(
    settings: Settings, database: Database
) -> None:
    import anyio
    import msgspec

    short = Stage(msgspec.structs.replace(settings, operation_deadline=0.3), database)
    try:
        await short.primary_with_fallback()

        async def slow_and_down(request: httpx.Request) -> httpx.Response:
            await anyio.sleep(0.5)
            return httpx.Response(503, json={"message": "down"})

        short.answers["alpha"] = slow_and_down
        response = await short.send()
    finally:
        await short.dispatcher.aclose()
    assert response.data["status"] == "outcome_unknown"  # alpha was cut off mid-call
    assert short.called() == ["alpha"]  # and bravo never tried


# -- the database fails mid-operation -----------------------------------------------------------


def fail_on(database: Database, event: str, table: str) -> None:
    """Make the database refuse every ``event`` (INSERT, UPDATE) on ``table``."""
    if database.dialect == "sqlite":
        sql = [
            f"CREATE TRIGGER inject_{table} BEFORE {event} ON {table}"
            " BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        ]
    else:
        sql = [
            "CREATE FUNCTION inject() RETURNS trigger AS $$"
            " BEGIN RAISE EXCEPTION 'injected failure'; END $$ LANGUAGE plpgsql",
            f"CREATE TRIGGER inject_{table} BEFORE {event} ON {table}"
            " FOR EACH ROW EXECUTE FUNCTION inject()",
        ]
    database.transaction_blocking(
        lambda conn: [conn.exec_driver_sql(statement) for statement in sql]
    )


async def test_no_provider_call_without_a_committed_attempt(stage: Stage) -> None:
    await stage.primary_with_fallback()
    fail_on(stage.database, "INSERT", "delivery_attempts")
    with pytest.raises(LedgerUnavailable) as info:
        await stage.send(key="k-fault")
    assert stage.calls == []  # nothing was sent
    assert rows(stage.database, operations) == []  # the whole start rolled back
    assert info.value.operation_id is None  # so the answer names no operation
    assert "nothing was sent" in str(info.value)


async def test_a_failed_final_record_leaves_the_attempt_in_flight_and_names_the_operation(
    stage: Stage,
) -> None:
    await stage.primary_with_fallback()
    fail_on(stage.database, "UPDATE", "operations")
    with pytest.raises(LedgerUnavailable) as info:
        await stage.send(key="k-late")
    assert stage.called() == ["alpha"]  # sent once, its attempt committed first
    [operation] = rows(stage.database, operations)
    [attempt] = rows(stage.database, delivery_attempts)
    assert info.value.operation_id == operation.id
    assert (operation.status, attempt.status) == ("in_progress", "in_flight")


# -- what changes while a call is in flight (review findings) ---------------------------------


def held(gate: anyio.Event, then: httpx.Response) -> Any:
    async def answer(request: httpx.Request) -> httpx.Response:
        await gate.wait()
        return then

    return answer


async def rotate(stage: Stage, integration_id: str, key: str) -> None:
    """The tenant rotates the integration's key and it is verified again."""
    await stage.integrations.update(
        stage.tenant_id, integration_id, {"credentials": {"api_key": key}}
    )
    await mark_active(stage.database, integration_id)


async def test_a_refusal_of_old_credentials_leaves_the_new_ones_alone(stage: Stage) -> None:
    alpha, _ = await stage.primary_with_fallback()
    gate = anyio.Event()
    stage.answers["alpha"] = held(gate, httpx.Response(401, json={"message": "old key"}))
    async with anyio.create_task_group() as group:
        group.start_soon(stage.send)
        while not stage.calls:
            await anyio.sleep(0.01)
        await rotate(stage, alpha, "key-rotated-0001")  # meanwhile: new, verified key
        gate.set()
    assert await stage.status(alpha) == "active"  # the 401 was about the old key


async def test_a_fallback_is_called_with_its_credentials_as_they_are_now(stage: Stage) -> None:
    _, bravo = await stage.primary_with_fallback()
    gate = anyio.Event()
    stage.answers["alpha"] = held(gate, httpx.Response(503, json={"message": "down"}))
    async with anyio.create_task_group() as group:
        group.start_soon(stage.send)
        while not stage.calls:
            await anyio.sleep(0.01)
        await rotate(stage, bravo, "key-rotated-bravo")
        gate.set()
    assert stage.called() == ["alpha", "bravo"]
    assert stage.calls[1][1].headers["authorization"] == "Bearer key-rotated-bravo"


async def test_an_operation_settled_under_it_sends_nothing_more(stage: Stage) -> None:
    await stage.primary_with_fallback()
    gate = anyio.Event()
    stage.answers["alpha"] = held(gate, httpx.Response(503, json={"message": "down"}))
    outcome: list[Any] = []

    async def first() -> None:
        try:
            outcome.append(await stage.send(key="k-slow"))
        except OperationExpired as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as group:
        group.start_soon(first)
        while not stage.calls:
            await anyio.sleep(0.01)
        # Its lease runs out (a slow database, a stalled process) and a repeat settles it.
        stage.database.transaction_blocking(
            lambda conn: conn.execute(
                operations.update().values(lease_expires_at=utcnow() - dt.timedelta(seconds=1))
            )
        )
        repeat = await stage.send(key="k-slow")
        assert repeat.code == "operation_outcome_unknown"
        gate.set()
    [expired] = outcome
    assert isinstance(expired, OperationExpired)
    assert stage.called() == ["alpha"]  # bravo was not tried after the settling
    [operation] = rows(stage.database, operations)
    assert operation.status == "outcome_unknown"


class DownKeyProvider:
    """A key provider whose service is down (a KMS unreachable): every call raises
    ConnectionError, with text that must never be shown."""

    name = "local"
    default_key_id = "k1"
    in_process = True

    def wrap(self, key_id: str, data_key: bytes, associated_data: bytes) -> bytes:
        raise ConnectionError("kms unreachable at kms.internal, key material kek-4d3c")

    def unwrap(self, key_id: str, wrapped: bytes, associated_data: bytes) -> bytes:
        raise ConnectionError("kms unreachable at kms.internal, key material kek-4d3c")


async def test_a_key_provider_outage_answers_503_and_sends_nothing(stage: Stage) -> None:
    """Every candidate's credentials stopped by the key provider: 503
    ``key_provider_unavailable`` with the operation, each attempt transient with nothing
    sent, the integrations left active, the operation's key released (a retry runs again)."""
    alpha, bravo = await stage.primary_with_fallback()
    real = stage.dispatcher.key_provider
    stage.dispatcher.key_provider = KeySet.single(DownKeyProvider())
    response = await stage.send(key="k-kms")
    assert (response.status_code, response.success, response.code) == (
        503,
        False,
        "key_provider_unavailable",
    )
    assert stage.calls == []
    assert response.data["status"] == "failed" and response.data["integration_id"] is None
    assert response.data["error"]["code"] == "key_provider_unavailable"
    assert [(a["status"], a["outcome"]) for a in response.data["attempts"]] == [
        ("failed", "transient"),
        ("failed", "transient"),
    ]
    assert [(a["status"], a["outcome"]) for a in await stage.attempts()] == [
        ("failed", "transient"),
        ("failed", "transient"),
    ]
    assert all("nothing was sent" in a["message"] for a in response.data["attempts"])
    assert "kek-4d3c" not in str(response) and "kms.internal" not in str(response)
    assert await stage.status(alpha) == await stage.status(bravo) == "active"
    [operation] = rows(stage.database, operations)
    assert operation.id == response.data["id"] and operation.status == "failed"
    assert operation.idempotency_key is None  # nothing was sent: released
    # the key provider back: the same key runs again (no replay of the 503)
    stage.dispatcher.key_provider = real
    again = await stage.send(key="k-kms")
    assert again.status_code == 201 and again.data["integration_id"] == alpha
    assert again.data["id"] != response.data["id"]


async def test_a_key_the_provider_no_longer_holds_falls_back(stage: Stage) -> None:
    """alpha's credentials are sealed under a key the keyring no longer holds (rotated,
    then removed: the operator's fault), bravo's under the current one. A send falls back
    to bravo, alpha stays active; with alpha alone, 503 ``key_provider_unavailable``."""
    keys = stage.integrations.key_provider
    alpha = await stage.integration("alpha")
    old_key = keys.primary_key_id
    custody.rotate(keys, "local")
    bravo = await stage.integration("bravo")
    assert keys.local is not None
    keys.local.remove_key(old_key)  # the key is lost from this keyring
    rule = await stage.routing.create(
        stage.tenant_id,
        {
            "capability": SMS,
            "integration_id": alpha,
            "fallback_integration_id": bravo,
            "is_default": True,
        },
    )
    served = await stage.send()
    assert served.status_code == 201 and served.data["integration_id"] == bravo
    assert [(a["integration_id"], a["outcome"]) for a in served.data["attempts"]] == [
        (alpha, "transient"),
        (bravo, "succeeded"),
    ]
    assert stage.called() == ["bravo"]
    assert await stage.status(alpha) == "active"  # not the tenant's fault

    await stage.routing.update(stage.tenant_id, rule.id, {"fallback_integration_id": None})
    alone = await stage.send()
    assert (alone.status_code, alone.code) == (503, "key_provider_unavailable")
    assert stage.called() == ["bravo"]  # nothing more sent
    assert await stage.status(alpha) == "active"


async def test_a_try_with_no_time_left_is_not_reported_as_a_possible_send(
    settings: Settings, database: Database
) -> None:
    import msgspec

    late = Stage(msgspec.structs.replace(settings, operation_deadline=1e-9), database)
    try:
        await late.primary_with_fallback()
        response = await late.send(key="k-late-start")
    finally:
        await late.dispatcher.aclose()
    assert late.calls == []
    assert response.code == "provider_unavailable" and response.data["status"] == "failed"
    [operation] = rows(database, operations)
    assert operation.idempotency_key is None  # nothing was sent, so the key may retry
