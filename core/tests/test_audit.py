"""The audit trail in the core: each change appends its event in its own transaction, the
events chain per tenant, and verification finds the first broken link. Real database
(SQLite, or PostgreSQL with RELAYKIT_TEST_DATABASE_URL), real sealing."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import threading
from typing import Any

import anyio
import pytest
import sqlalchemy as sa

from relaykit import audit, tenants
from relaykit import integrations as integrations_module
from relaykit.catalog import Catalog
from relaykit.context import bound
from relaykit.errors import NotFoundError, ValidationError
from relaykit.ids import isoformat_z, utcnow
from relaykit.integrations import IntegrationService
from relaykit.keys import custody, local_key_set, rewrap_all
from relaykit.lifecycle import Action, VerificationRecord
from relaykit.plugins import make_plugin_manager
from relaykit.routing import RoutingService
from relaykit.settings import Settings
from relaykit.storage import integrations as integration_rows
from relaykit.storage.database import Database
from relaykit.storage.models import audit_events, integrations
from relaykit.wire import AuditEvent
from relaykit.worker import apply_result

from .providers_for_tests import OneProvider, make_provider

pytestmark = pytest.mark.anyio
CANARY = "canary-secret-value-4242"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def catalog() -> Catalog:
    return make_plugin_manager(
        load_entrypoints=False,
        plugins=[("acme", OneProvider(make_provider("acme"), make_provider("other")))],
    ).catalog()


@pytest.fixture
def service(database: Database, catalog: Catalog, settings: Settings) -> IntegrationService:
    return IntegrationService(database, catalog, local_key_set(settings, database))


@pytest.fixture
def trail(database: Database) -> audit.AuditService:
    return audit.AuditService(database)


def tenant(database: Database, name: str = "acme") -> str:
    return database.transaction_blocking(tenants.create_tenant, name).id


def body(provider: str = "acme", secret: str = CANARY) -> dict[str, Any]:
    return {
        "provider": provider,
        "credentials": {"api_key": secret, "account": "acct-1"},
        "enabled_capabilities": ["send_sms"],
    }


def rows_of(database: Database, chain: str) -> list[dict[str, Any]]:
    return database.read_blocking(
        lambda conn: [
            dict(row)
            for row in conn.execute(
                sa.select(audit_events).where(audit_events.c.chain == chain).order_by("seq")
            ).mappings()
        ]
    )


def verify_as_worker(database: Database, tenant_id: str, integration_id: str) -> bool:
    """What the worker's _apply does for an accepted check (the row leased to "w")."""
    now = utcnow()

    def apply(conn: sa.Connection) -> bool:
        conn.execute(
            integrations.update()
            .where(integrations.c.id == integration_id)
            .values(lease_owner="w", lease_expires_at=now + dt.timedelta(minutes=1))
        )
        return apply_result(
            conn,
            tenant_id,
            integration_id,
            owner="w",
            credentials_version=1,
            action=Action.VERIFICATION_ACCEPTED,
            verification=VerificationRecord(outcome="accepted", message="ok", checked_at="x"),
            now=now,
            next_verify_at=None,
        )

    return database.transaction_blocking(apply)


async def test_an_integrations_life_is_recorded_in_order_with_actors_and_statuses(
    database: Database, service: IntegrationService
) -> None:
    tenant_id = tenant(database)
    with bound(actor="01tokenid0000000000000000a", request_id="req-1"):
        made = await service.create(tenant_id, body())
    assert verify_as_worker(database, tenant_id, made.id)
    with bound(actor="01tokenid0000000000000000a", request_id="req-2"):
        await service.update(tenant_id, made.id, {"metadata": {"env": "prod"}})
        await service.update(tenant_id, made.id, {"metadata": {"env": "prod"}})  # no change
        await service.disable(tenant_id, made.id)
        await service.activate(tenant_id, made.id)
        await service.update(tenant_id, made.id, {"credentials": {"api_key": CANARY + "-new"}})
        await service.delete(tenant_id, made.id)

    events = rows_of(database, tenant_id)
    assert [(e["seq"], e["action"], e["status_before"], e["status_after"]) for e in events] == [
        (1, "integration.created", None, "pending_verify"),
        (2, "integration.verified", "pending_verify", "active"),
        (3, "integration.updated", "active", "active"),
        (4, "integration.disabled", "active", "inactive"),
        (5, "integration.activated", "inactive", "active"),
        (6, "integration.credentials_replaced", "active", "pending_verify"),
        (7, "integration.deleted", "pending_verify", None),
    ]
    assert [e["actor"] for e in events] == [
        "01tokenid0000000000000000a",
        "worker",
        *["01tokenid0000000000000000a"] * 5,
    ]
    assert [e["request_id"] for e in events] == ["req-1", None, *["req-2"] * 5]
    assert {e["integration_id"] for e in events} == {made.id}
    assert {e["tenant_id"] for e in events} == {tenant_id}
    assert events[0]["details"] == {
        "provider": "acme",
        "enabled_capabilities": ["send_sms"],
        "credential_fields": ["account", "api_key"],
        "metadata_keys": [],
    }
    assert events[2]["details"] == {"fields": ["metadata"], "metadata_keys": ["env"]}
    assert events[5]["details"] == {"credential_fields": ["api_key"]}
    # the chain: each event carries the digest of the one before
    assert events[0]["prev_digest"] == audit.ZERO_DIGEST
    for before, after in itertools.pairwise(events):
        assert after["prev_digest"] == before["digest"]
    # never a credential's value, anywhere in the trail
    assert CANARY not in json.dumps([{**e, "created_at": str(e["created_at"])} for e in events])


async def test_a_change_that_does_not_happen_records_nothing(
    database: Database, service: IntegrationService
) -> None:
    tenant_id = tenant(database)
    await service.create(tenant_id, body())
    with pytest.raises(ValidationError):
        await service.create(tenant_id, body())  # a duplicate: nothing inserted
    with pytest.raises(NotFoundError):
        await service.delete(tenant_id, "01aaaaaaaaaaaaaaaaaaaaaaaa")
    assert [e["action"] for e in rows_of(database, tenant_id)] == ["integration.created"]


async def test_the_event_rolls_back_with_its_change(
    database: Database, service: IntegrationService
) -> None:
    """Written in the change's transaction: when that transaction fails after the append,
    neither the change nor its event is stored."""
    tenant_id = tenant(database)
    made = await service.create(tenant_id, body())

    def delete_then_fail(conn: sa.Connection) -> None:
        integration_rows.soft_delete(conn, tenant_id, made.id, utcnow())
        audit.record(
            conn, tenant_id=tenant_id, action=audit.INTEGRATION_DELETED, resource_type="integration"
        )
        raise RuntimeError("the change failed after its event was appended")

    with pytest.raises(RuntimeError):
        await database.transaction(delete_then_fail)
    assert (await service.get(tenant_id, made.id)).id == made.id
    assert [e["action"] for e in rows_of(database, tenant_id)] == ["integration.created"]


async def test_routing_rule_events_name_what_changed(
    database: Database, service: IntegrationService, catalog: Catalog
) -> None:
    tenant_id = tenant(database)
    acme = await service.create(tenant_id, body("acme"))
    other = await service.create(tenant_id, body("other"))
    routing = RoutingService(database, catalog)
    rule = await routing.create(tenant_id, {"capability": "send_sms", "integration_id": acme.id})
    await routing.update(tenant_id, rule.id, {"priority": 0})  # no change: no event
    await routing.update(
        tenant_id, rule.id, {"integration_id": other.id, "fallback_integration_id": acme.id}
    )
    await routing.delete(tenant_id, rule.id)
    events = [e for e in rows_of(database, tenant_id) if e["resource_type"] == "routing_rule"]
    assert [e["action"] for e in events] == [
        "routing_rule.created",
        "routing_rule.updated",
        "routing_rule.deleted",
    ]
    assert {e["resource_id"] for e in events} == {rule.id}
    assert events[0]["integration_id"] == acme.id
    assert events[1]["integration_id"] == other.id
    assert events[1]["details"] == {
        "fields": ["integration_id", "fallback_integration_id"],
        "before": {"integration_id": acme.id, "fallback_integration_id": None},
        "after": {"integration_id": other.id, "fallback_integration_id": acme.id},
    }
    assert events[2]["details"]["integration_id"] == other.id


def test_tokens_created_and_revoked_once(database: Database) -> None:
    tenant_id = tenant(database)
    record, token = database.transaction_blocking(tenants.create_token, "acme", label="ci")
    database.transaction_blocking(tenants.revoke_token, record.id)
    database.transaction_blocking(tenants.revoke_token, token)  # a repeat changes nothing
    events = rows_of(database, tenant_id)
    assert [(e["action"], e["actor"], e["resource_id"]) for e in events] == [
        ("token.created", "cli", record.id),
        ("token.revoked", "cli", record.id),
    ]
    secret = token.rsplit("_", 1)[1]
    assert all(secret not in json.dumps(e["details"]) for e in events)


async def test_a_rewrap_records_each_batch_with_the_rows_it_moved(
    database: Database, service: IntegrationService, settings: Settings
) -> None:
    """Each batch's event is written with its rows: a run stopped half-way leaves a trail of
    what it did; a run with nothing to move records nothing."""
    tenant_ids = [tenant(database, f"t{n}") for n in range(3)]
    for tenant_id in tenant_ids:
        await service.create(tenant_id, body())
    keyring = local_key_set(settings, database)
    custody.rotate(keyring, "local")
    await rewrap_all(database, keyring, batch_size=2)
    events = rows_of(database, audit.SYSTEM_CHAIN)
    assert [e["action"] for e in events] == ["keys.rotated", "keys.rewrapped", "keys.rewrapped"]
    events = events[1:]
    assert [e["details"]["rewrapped"] for e in events] == [2, 1]
    assert events[0]["tenant_id"] is None
    assert events[0]["details"] == {
        "key_provider": "local",
        "primary_key_id": keyring.primary_key_id,
        "rewrapped": 2,
        "skipped": 0,
        "failed": 0,
    }
    await rewrap_all(database, keyring)  # nothing left to move: no event
    assert len(rows_of(database, audit.SYSTEM_CHAIN)) == 3
    assert database.read_blocking(audit.verify, audit.SYSTEM_CHAIN)[0].broken is None


async def test_verify_finds_the_first_broken_link(
    database: Database, service: IntegrationService
) -> None:
    tenant_id = tenant(database)
    made = await service.create(tenant_id, body())
    for number in range(4):
        await service.update(tenant_id, made.id, {"metadata": {"n": number}})
    [report] = database.read_blocking(audit.verify)
    assert (report.chain, report.events, report.head_seq, report.broken) == (
        tenant_id,
        5,
        5,
        None,
    )
    events = rows_of(database, tenant_id)

    def edit(seq: int, **values: Any) -> None:
        database.transaction_blocking(
            lambda conn: conn.execute(
                audit_events.update()
                .where(audit_events.c.chain == tenant_id, audit_events.c.seq == seq)
                .values(**values)
            )
        )

    edit(3, actor="someone-else")
    [report] = database.read_blocking(audit.verify, tenant_id)
    assert report.broken == audit.Broken(
        events[2]["id"], 3, "digest mismatch: the event was changed after it was written"
    )
    # a forger who also fixes the digest breaks the next link instead
    forged = {**events[2], "actor": "someone-else"}
    edit(3, digest=audit.digest_of(forged))
    [report] = database.read_blocking(audit.verify, tenant_id)
    assert report.broken is not None
    assert (report.broken.event_id, report.broken.problem.split(":")[0]) == (
        events[3]["id"],
        "prev_digest mismatch",
    )
    # an event taken out is a gap
    edit(3, actor=events[2]["actor"], digest=events[2]["digest"])
    assert database.read_blocking(audit.verify, tenant_id)[0].broken is None
    database.transaction_blocking(
        lambda conn: conn.execute(audit_events.delete().where(audit_events.c.id == events[1]["id"]))
    )
    [report] = database.read_blocking(audit.verify, tenant_id)
    assert report.broken is not None
    assert (report.broken.event_id, report.broken.problem) == (
        events[2]["id"],
        "seq gap: expected seq 2, found 3",
    )


async def test_a_digest_can_be_recomputed_from_the_api_resource(
    database: Database, service: IntegrationService, trail: audit.AuditService
) -> None:
    """An outside verifier needs only what the API returns and the documented encoding."""
    tenant_id = tenant(database)
    made = await service.create(tenant_id, body())
    await service.update(tenant_id, made.id, {"enabled_capabilities": []})
    page = await trail.list(tenant_id)
    assert [event.seq for event in page.items] == [2, 1]
    for event in page.items:
        assert recomputed(event, tenant_id) == event.digest


def recomputed(event: AuditEvent, tenant_id: str) -> str:
    """docs/audit.md's recipe, with the standard library's json."""
    fields = [
        event.id,
        tenant_id,  # chain
        event.seq,
        tenant_id,
        event.action,
        event.actor,
        event.request_id,
        event.resource_type,
        event.resource_id,
        event.integration_id,
        event.status_before,
        event.status_after,
        event.details,
        event.created_at,
        event.prev_digest,
    ]
    encoded = json.dumps(fields, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(encoded.encode()).hexdigest()


def test_concurrent_appends_to_one_chain_stay_one_chain(database: Database) -> None:
    """Writers in several threads (several connections) extend one chain: no fork, no gap,
    every link intact (PostgreSQL: the advisory lock; SQLite: the write lock)."""
    tenant_id = tenant(database)
    failures: list[BaseException] = []

    def writer(number: int) -> None:
        try:
            for step in range(15):
                database.transaction_blocking(
                    audit.record,
                    tenant_id=tenant_id,
                    action=audit.INTEGRATION_UPDATED,
                    resource_type="integration",
                    details={"writer": number, "step": step},
                )
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    events = rows_of(database, tenant_id)
    assert [e["seq"] for e in events] == list(range(1, 91))
    assert database.read_blocking(audit.verify, tenant_id)[0].broken is None


async def test_the_list_filters_and_pages(
    database: Database, service: IntegrationService, trail: audit.AuditService
) -> None:
    tenant_id = tenant(database)
    acme = await service.create(tenant_id, body("acme"))
    with bound(actor="01tokenid0000000000000000b"):
        other = await service.create(tenant_id, body("other"))
    assert verify_as_worker(database, tenant_id, acme.id)
    everything = await trail.list(tenant_id)
    assert [e.action for e in everything.items] == [
        "integration.verified",
        "integration.created",
        "integration.created",
    ]
    assert everything.total == 3
    assert [e.seq for e in (await trail.list(tenant_id, per_page=2, page=2)).items] == [1]
    assert [e.seq for e in (await trail.list(tenant_id, integration_id=acme.id)).items] == [3, 1]
    assert [e.integration_id for e in (await trail.list(tenant_id, actor="worker")).items] == [
        acme.id
    ]
    by_token = await trail.list(tenant_id, actor="01tokenid0000000000000000b")
    assert [e.integration_id for e in by_token.items] == [other.id]
    created = await trail.list(tenant_id, action="integration.created")
    assert created.total == 2
    now = utcnow()
    later = isoformat_z(now + dt.timedelta(hours=1))
    earlier = isoformat_z(now - dt.timedelta(hours=1))
    assert (await trail.list(tenant_id, since=later)).total == 0
    assert (await trail.list(tenant_id, until=earlier)).total == 0
    assert (await trail.list(tenant_id, since=earlier, until=later)).total == 3
    assert (await trail.list(tenant_id, since="2000-01-01T00:00:00")).total == 3  # naive: UTC
    # another tenant sees none of it
    assert (await trail.list(tenant(database, "globex"))).total == 0


async def test_bad_filters_are_refused_each_by_name(
    database: Database, service: IntegrationService, trail: audit.AuditService
) -> None:
    tenant_id = tenant(database)
    with pytest.raises(ValidationError) as refused:
        await trail.list(
            tenant_id,
            integration_id="nope",
            action="integration.exploded",
            actor="a\x00b",
            since="yesterday",
            until="2026-13-01T00:00:00Z",
            per_page=0,
        )
    assert set(refused.value.errors) == {
        "integration_id",
        "action",
        "actor",
        "since",
        "until",
        "per_page",
    }
    with pytest.raises(ValidationError) as backwards:
        await trail.list(tenant_id, since="2026-01-02T00:00:00Z", until="2026-01-01T00:00:00Z")
    assert set(backwards.value.errors) == {"until"}


async def test_an_integrations_events_outlive_it_and_stay_its_tenants(
    database: Database, service: IntegrationService, trail: audit.AuditService
) -> None:
    tenant_id = tenant(database)
    made = await service.create(tenant_id, body())
    await service.delete(tenant_id, made.id)
    events = await trail.integration_events(tenant_id, made.id)
    assert [e.action for e in events.items] == ["integration.deleted", "integration.created"]
    globex = tenant(database, "globex")
    for who, which in (
        (globex, made.id),
        (tenant_id, "01aaaaaaaaaaaaaaaaaaaaaaaa"),
        (tenant_id, "x"),
    ):
        with pytest.raises(NotFoundError):
            await trail.integration_events(who, which)


def test_deferred_checks_are_not_events_final_ones_are(
    database: Database, service: IntegrationService
) -> None:
    tenant_id = tenant(database)
    made = anyio.run(service.create, tenant_id, body())
    now = utcnow()
    record = VerificationRecord(outcome="transient", message="503", checked_at="x", attempts=1)

    def check(conn: sa.Connection, action: Action, verification: VerificationRecord) -> bool:
        conn.execute(
            integrations.update()
            .where(integrations.c.id == made.id)
            .values(lease_owner="w", lease_expires_at=now + dt.timedelta(minutes=1))
        )
        return apply_result(
            conn,
            tenant_id,
            made.id,
            owner="w",
            credentials_version=1,
            action=action,
            verification=verification,
            now=now,
            next_verify_at=now if action is Action.VERIFICATION_DEFERRED else None,
        )

    assert database.transaction_blocking(check, Action.VERIFICATION_DEFERRED, record)
    assert [e["action"] for e in rows_of(database, tenant_id)] == ["integration.created"]
    gave_up = VerificationRecord(
        outcome="transient", message="503", checked_at="x", attempts=8, error="gave up: 503"
    )
    assert database.transaction_blocking(check, Action.VERIFICATION_GAVE_UP, gave_up)
    last = rows_of(database, tenant_id)[-1]
    assert (last["action"], last["actor"], last["status_after"]) == (
        "integration.verification_failed",
        "worker",
        "error",
    )
    assert last["details"] == {
        "outcome": "transient",
        "attempts": 8,
        "gave_up": True,
        "error": "gave up: 503",
    }


async def test_a_patch_racing_another_records_what_it_changed_from_the_row_it_wrote_over(
    database: Database, service: IntegrationService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A metadata PATCH reads the row, then writes: if another write lands in between, it
    starts again from the new row, so its event names what it changed from what it replaced."""
    tenant_id = tenant(database)
    made = await service.create(tenant_id, body())
    real = integrations_module._edit_details
    raced = []

    def edit_details_with_a_race(row: Any, values: dict[str, Any]) -> dict[str, Any]:
        if not raced:  # another write lands between this request's read and its write
            raced.append(True)
            database.transaction_blocking(
                integration_rows.update_fields,
                made.id,
                {"metadata": {"team": "a"}, "updated_at": utcnow()},
            )
        return real(row, values)

    monkeypatch.setattr(integrations_module, "_edit_details", edit_details_with_a_race)
    await service.update(tenant_id, made.id, {"metadata": {"team": "a", "tier": "gold"}})
    updates = [e for e in rows_of(database, tenant_id) if e["action"] == "integration.updated"]
    # from the row as the other write left it: only "tier" changed (not "team" as well)
    assert [e["details"]["metadata_keys"] for e in updates] == [["tier"]]
    assert (await service.get(tenant_id, made.id)).metadata == {"team": "a", "tier": "gold"}
