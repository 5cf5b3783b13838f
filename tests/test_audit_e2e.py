"""The audit trail end to end: the real server with its worker, the real Twilio and Plivo
plugins against the messaging stand-in, the CLI in processes of its own.

The contract's Scenario 3 (moving SMS from Plivo to Twilio: configure Twilio, let it
verify, switch the rule, disable Plivo) reads back in order with the right actors; editing
one stored event makes ``relaykit audit verify`` name it; another tenant's token sees none
of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from relaykit.client import AuditEvent
from relaykit.storage.models import audit_events
from relaykit.testing.standin import stand_in

from .conftest import Server, cli_env, run_cli, start_server, stop_server
from .messaging_standin import Messaging
from .test_verification_e2e import wait_for

CANARY = "plivo-canary-auth-token-93e1"


class World:
    def __init__(self, server: Server, env: dict[str, str], token: str) -> None:
        self.server = server
        self.env = env
        self.token = token
        self.token_id = token.split("_")[1]
        self.api = server.api(token)

    def configure(self, provider: str, auth_token: str) -> str:
        identity = {"twilio": "account_sid", "plivo": "auth_id"}[provider]
        made = self.api.create_integration(
            provider,
            {
                identity: f"{provider}-account",
                "auth_token": auth_token,
                "from_number": "+15550100000",
            },
            ["send_sms", "send_whatsapp"],
        )
        wait_for(lambda: self.api.get_integration(made.id).status == "active")
        return made.id


def new_token(env: dict[str, str], tenant: str) -> str:
    run_cli(["tenants", "create", tenant], env)
    return run_cli(["tokens", "create", "--tenant", tenant], env).stdout.strip().splitlines()[-1]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with stand_in(Messaging()) as providers:
        env = cli_env(
            tmp_path / "home",
            {
                "RELAYKIT_TWILIO_API_BASE": providers.base_url,
                "RELAYKIT_PLIVO_API_BASE": providers.base_url,
            },
        )
        token = new_token(env, "acme")
        server = start_server(env, tmp_path / "server.log")
        world = World(server, env, token)
        try:
            yield world
        finally:
            world.api.close()
            stop_server(server)


def summary(events: list[AuditEvent]) -> list[tuple[str, str, str | None, str | None]]:
    return [(e.action, e.actor, e.status_before, e.status_after) for e in events]


def test_scenario_3_reads_back_in_order_and_an_edited_event_is_named(
    world: World, database_url: str
) -> None:
    # before: SMS goes through Plivo
    plivo = world.configure("plivo", CANARY)
    made = world.api.create_routing_rule("send_sms", plivo, is_default=True, priority=100)
    # Scenario 3
    twilio = world.configure("twilio", "twilio-token-1")
    world.api.update_routing_rule(made.id, integration_id=twilio)
    world.api.disable_integration(plivo)

    trail = list(world.api.iter_audit_events(per_page=3))  # newest first, over pages
    trail.reverse()
    me = world.token_id
    assert summary(trail) == [
        ("token.created", "cli", None, None),
        ("integration.created", me, None, "pending_verify"),
        ("integration.verified", "worker", "pending_verify", "active"),
        ("routing_rule.created", me, None, None),
        ("integration.created", me, None, "pending_verify"),
        ("integration.verified", "worker", "pending_verify", "active"),
        ("routing_rule.updated", me, None, None),
        ("integration.disabled", me, "active", "inactive"),
    ]
    assert [e.seq for e in trail] == list(range(1, 9))
    assert [e.integration_id for e in trail[1:]] == [
        plivo,
        plivo,
        plivo,
        twilio,
        twilio,
        twilio,
        plivo,
    ]
    assert trail[6].details == {
        "fields": ["integration_id"],
        "before": {"integration_id": plivo},
        "after": {"integration_id": twilio},
    }
    # the API's changes carry their request's id; the worker's have none
    assert all(e.request_id for e in trail if e.actor == me)
    assert all(e.request_id is None for e in trail if e.actor == "worker")
    # one integration's events: its own, and the rule's while the rule pointed at it
    plivo_events = world.api.list_integration_events(plivo).data
    assert [e.action for e in plivo_events] == [
        "integration.disabled",
        "routing_rule.created",
        "integration.verified",
        "integration.created",
    ]
    # never a credential's value
    assert CANARY not in str(trail)

    # another tenant's token sees none of it
    with world.server.api(new_token(world.env, "globex")) as globex:
        theirs = globex.list_audit_events()
        assert [e.action for e in theirs.data] == ["token.created"]
        assert globex.list_audit_events(integration_id=plivo).data == []

    # the chain is intact; editing one stored event makes verify name it
    intact = run_cli(["audit", "verify"], world.env)
    assert intact.stdout.strip().splitlines()[-1] == "9 events in 2 chains: intact"
    edited = trail[3]  # the routing rule's creation
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                audit_events.update()
                .where(audit_events.c.id == edited.id)
                .values(actor="01hnobody0000000000000000x")
            )
    finally:
        engine.dispose()
    broken = run_cli(["audit", "verify"], world.env, check=False)
    assert broken.returncode == 1
    assert f"at event {edited.id} (seq 4)" in broken.stdout
    assert "digest mismatch" in broken.stdout
    # only that tenant's chain is broken
    assert run_cli(["audit", "verify", "--tenant", "globex"], world.env).returncode == 0
    assert run_cli(["audit", "verify", "--tenant", "acme"], world.env, check=False).returncode == 1
