"""Routing order: the pure step from the route's rows to candidates, then the whole route
through RoutingService on a real database."""

from __future__ import annotations

from typing import Any

import pytest

from relaykit import tenants
from relaykit.integrations import IntegrationService
from relaykit.keys import local_key_set
from relaykit.plugins import make_plugin_manager
from relaykit.routing import RouteCandidate, RoutingService, candidates_from
from relaykit.settings import Settings
from relaykit.storage import integrations as integration_rows
from relaykit.storage.database import Database

from .providers_for_tests import OneProvider, make_provider, mark_active

pytestmark = pytest.mark.anyio

SMS = "send_sms"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- candidates_from: rows as the route query returns them -----------------------------------


def joined(
    rule: str,
    integration: str,
    fallback: str | None,
    found: str | None,
    *,
    capabilities: Any = (SMS,),  # a list, or JSON text as SQLite's plain-SQL rows hold it
    public: Any = None,
    sealed: bytes | None = None,
) -> tuple[Any, ...]:
    """One row of the route query (storage.routing_rules._ROUTE_SQL): the rule's ids, then
    the one of its two integrations the join found active (``found``), or nulls."""
    if found is None:
        return (rule, integration, fallback, None, None, None, None, None, None)
    return (
        rule,
        integration,
        fallback,
        found,
        f"prov-{found}",
        capabilities if isinstance(capabilities, str) else list(capabilities),
        public if public is not None else {"account": found},
        sealed,
        1,
    )


def ids(candidates: list[RouteCandidate]) -> list[str]:
    return [candidate.integration_id for candidate in candidates]


def test_each_rule_offers_its_integration_then_its_fallback_in_row_order() -> None:
    found = [
        # the join may return the fallback's row first: the rule's columns decide the order
        joined("r1", "a", "b", "b"),
        joined("r1", "a", "b", "a"),
        joined("r2", "c", None, "c"),
        joined("r3", "d", "e", "e"),
        joined("r3", "d", "e", "d"),
    ]
    assert ids(candidates_from(found, SMS)) == ["a", "b", "c", "d", "e"]


def test_an_integration_named_twice_is_offered_once_where_it_first_appears() -> None:
    found = [
        joined("r1", "a", "b", "a"),
        joined("r1", "a", "b", "b"),
        joined("r2", "b", "c", "b"),
        joined("r2", "b", "c", "c"),
        joined("r3", "c", "a", "c"),
        joined("r3", "c", "a", "a"),
    ]
    assert ids(candidates_from(found, SMS)) == ["a", "b", "c"]


def test_integrations_the_join_did_not_find_active_are_skipped() -> None:
    found = [
        joined("r1", "a", "b", "b"),  # a is not active: only b's row
        joined("r2", "c", "d", None),  # neither is: one row of nulls
        joined("r3", "e", None, "e"),
    ]
    assert ids(candidates_from(found, SMS)) == ["b", "e"]


def test_integrations_without_the_capability_enabled_are_skipped() -> None:
    found = [
        joined("r1", "a", "b", "a", capabilities=["send_whatsapp"]),
        joined("r1", "a", "b", "b", capabilities=["send_whatsapp", SMS]),
        joined("r2", "c", None, "c", capabilities=[]),
    ]
    assert ids(candidates_from(found, SMS)) == ["b"]
    assert ids(candidates_from(found, "send_whatsapp")) == ["a", "b"]


def test_a_candidate_carries_what_the_dispatcher_needs() -> None:
    """SQLite's plain-SQL rows hold JSON as text, PostgreSQL's as values: both are read."""
    found = [
        joined("r1", "a", "b", "a", capabilities='["send_sms"]', public='{"account": "x"}'),
        joined("r1", "a", "b", "b", public={}, sealed=b"sealed-b"),
    ]
    assert candidates_from(found, SMS) == [
        RouteCandidate("a", "prov-a", {"account": "x"}, None, 1),
        RouteCandidate("b", "prov-b", {}, b"sealed-b", 1),
    ]


def test_no_rules_no_candidates() -> None:
    assert candidates_from([], SMS) == []


# -- the route through RoutingService, on a real database ------------------------------------

PROVIDERS = ("alpha", "bravo", "charlie", "delta", "echo")


class Tenant:
    """One tenant with an integration service and routing over five SMS providers."""

    def __init__(self, settings: Settings, database: Database, name: str = "acme") -> None:
        catalog = make_plugin_manager(
            load_entrypoints=False,
            plugins=[("sms", OneProvider(*(make_provider(name) for name in PROVIDERS)))],
        ).catalog()
        self.database = database
        self.integrations = IntegrationService(database, catalog, local_key_set(settings, database))
        self.routing = RoutingService(database, catalog)
        self.id = database.transaction_blocking(tenants.create_tenant, name).id

    async def integration(self, provider: str, *, active: bool = True) -> str:
        """A new integration for ``provider`` with send_sms enabled, verified unless not
        ``active`` (then it stays pending_verify)."""
        created = await self.integrations.create(
            self.id,
            {
                "provider": provider,
                "credentials": {"api_key": f"key-{provider}", "account": provider},
                "enabled_capabilities": [SMS],
            },
        )
        if active:
            await mark_active(self.database, created.id)
        return created.id

    async def rule(self, integration_id: str, fallback: str | None = None, **fields: Any) -> str:
        body = {"capability": SMS, "integration_id": integration_id, **fields}
        if fallback is not None:
            body["fallback_integration_id"] = fallback
        return (await self.routing.create(self.id, body)).id

    async def route(self) -> list[str]:
        """The integration ids routing offers now; the dispatcher's two ways of asking (a
        read of its own, and inside a transaction) must agree."""
        alone = await self.routing.candidates(self.id, SMS)
        inside = await self.database.read(
            lambda conn: self.routing.candidates_in(conn, self.id, SMS)
        )
        assert alone == inside
        return ids(alone)


@pytest.fixture
def tenant(settings: Settings, database: Database) -> Tenant:
    return Tenant(settings, database)


async def test_default_first_then_higher_priority_then_older(tenant: Tenant) -> None:
    a, b, c, d, e = [await tenant.integration(name) for name in PROVIDERS]
    await tenant.rule(a, priority=-5)
    await tenant.rule(b, priority=10)
    await tenant.rule(c, is_default=True, priority=-100)  # the default wins over any priority
    await tenant.rule(d, priority=10)  # ties with b's rule, written later
    await tenant.rule(e, priority=0)
    assert await tenant.route() == [c, b, d, e, a]


async def test_each_rule_then_its_fallback_each_integration_once(tenant: Tenant) -> None:
    a, b, c, d = [await tenant.integration(name) for name in PROVIDERS[:4]]
    await tenant.rule(c, fallback=a, priority=1)
    await tenant.rule(a, fallback=b, priority=3)
    await tenant.rule(b, fallback=c, priority=2)
    await tenant.rule(d, fallback=b, priority=0)
    assert await tenant.route() == [a, b, c, d]


async def test_integrations_that_cannot_serve_now_are_left_out(tenant: Tenant) -> None:
    pending = await tenant.integration("alpha", active=False)
    disabled = await tenant.integration("bravo")
    deleted = await tenant.integration("charlie")
    sms_off = await tenant.integration("delta")
    usable = await tenant.integration("echo")
    # rules are written while all can; a pending integration may be named too
    await tenant.rule(pending, fallback=disabled, priority=3)
    await tenant.rule(deleted, fallback=sms_off, priority=2)
    await tenant.rule(usable, priority=1)
    assert await tenant.route() == [disabled, deleted, sms_off, usable]

    await tenant.integrations.disable(tenant.id, disabled)
    await tenant.integrations.delete(tenant.id, deleted)
    await tenant.integrations.update(tenant.id, sms_off, {"enabled_capabilities": []})
    assert await tenant.route() == [usable]
    # the dispatcher's re-check before a fallback agrees
    for integration_id in (pending, disabled, deleted, sms_off):
        assert not await usable_now(tenant, integration_id)
    assert await usable_now(tenant, usable)

    await tenant.integrations.update(tenant.id, sms_off, {"enabled_capabilities": [SMS]})
    await tenant.integrations.activate(tenant.id, disabled)
    assert await tenant.route() == [disabled, sms_off, usable]


async def test_writing_a_default_moves_the_flag(tenant: Tenant) -> None:
    a, b = await tenant.integration("alpha"), await tenant.integration("bravo")
    first = await tenant.rule(a, is_default=True)
    second = await tenant.rule(b, is_default=True, priority=-1)
    assert (await tenant.routing.get(tenant.id, first)).is_default is False
    assert (await tenant.routing.get(tenant.id, second)).is_default is True
    assert await tenant.route() == [b, a]

    updated = await tenant.routing.update(tenant.id, first, {"is_default": True})
    assert updated.is_default is True
    assert (await tenant.routing.get(tenant.id, second)).is_default is False
    assert await tenant.route() == [a, b]
    listed = await tenant.routing.list(tenant.id, capability=SMS)
    assert [rule.id for rule in listed.items if rule.is_default] == [first]


async def test_a_deleted_rule_leaves_the_route(tenant: Tenant) -> None:
    a, b = await tenant.integration("alpha"), await tenant.integration("bravo")
    first = await tenant.rule(a, priority=5)
    await tenant.rule(b)
    await tenant.routing.delete(tenant.id, first)
    assert await tenant.route() == [b]


async def test_another_tenants_rules_are_not_in_the_route(
    tenant: Tenant, settings: Settings, database: Database
) -> None:
    ours = await tenant.integration("alpha")
    await tenant.rule(ours)
    other = Tenant(settings, database, "other")
    assert await other.route() == []
    theirs = await other.integration("alpha")
    await other.rule(theirs)
    assert await tenant.route() == [ours]
    assert await other.route() == [theirs]


async def test_a_rule_changed_since_it_was_read_is_not_written_over(tenant: Tenant) -> None:
    """A rule's PATCH writes only if the rule is as it read it (its updated_at): on
    PostgreSQL two PATCHes of one rule cannot lose one's fields."""
    from relaykit.storage import routing_rules as rule_rows

    first = await tenant.integration("alpha")
    rule_id = await tenant.rule(first, priority=1)
    read = await tenant.database.read(rule_rows.find, tenant.id, rule_id)
    await tenant.routing.update(tenant.id, rule_id, {"priority": 2})  # another request
    written = tenant.database.transaction_blocking(
        rule_rows.update, rule_id, {"priority": 3}, seen=read.updated_at
    )
    assert written is False
    assert (await tenant.routing.get(tenant.id, rule_id)).priority == 2


async def usable_now(tenant: Tenant, integration_id: str) -> bool:
    found = await tenant.database.read(
        integration_rows.credentials_if_usable, tenant.id, integration_id, SMS
    )
    return found is not None
