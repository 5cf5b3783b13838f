"""Routing end to end over real HTTP: the server with its worker, the real Twilio and Plivo
plugins, and a local stand-in of both providers. The contract's Scenario 3 (moving SMS from
Plivo to Twilio) is the backbone."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from relaykit.client import ApiError, Conflict, Operation, OperationFailed, RoutingRule
from relaykit.testing.standin import StandIn, stand_in

from .conftest import Recorder, Server, cli_env, run_cli, start_server, stop_server
from .messaging_standin import Messaging
from .test_verification_e2e import wait_for

MESSAGE = {"to": "+14155552345", "body": "Your code is 123456"}


class World:
    def __init__(self, server: Server, token: str, messaging: Messaging, stand_in: StandIn):
        self.server = server
        self.token = token
        self.messaging = messaging
        self.stand_in = stand_in
        self.wire = Recorder()  # the answers as they came over the wire, for the raw checks
        self.api = server.api(token, transport=self.wire)

    def configure(self, provider: str, auth_token: str) -> str:
        identity = {"twilio": "account_sid", "plivo": "auth_id"}[provider]
        integration = self.api.create_integration(
            provider,
            {
                identity: f"{provider}-account",
                "auth_token": auth_token,
                "from_number": "+15550100000",
            },
            ["send_sms", "send_whatsapp"],
        )
        wait_for(lambda: self.status(integration.id) == "active")
        return integration.id

    def status(self, integration_id: str) -> str:
        return self.api.get_integration(integration_id).status

    def rule(self, primary: str, fallback: str | None) -> RoutingRule:
        return self.api.create_routing_rule(
            "send_sms", primary, fallback_integration_id=fallback, is_default=True, priority=100
        )

    def send(self, idempotency_key: str | None = None) -> Operation:
        return self.api.run_operation("send_sms", MESSAGE, idempotency_key=idempotency_key)

    def send_in_background(
        self, idempotency_key: str | None = None
    ) -> tuple[threading.Thread, dict[str, Operation | ApiError]]:
        """Send from another thread (its own connection); the operation, or the ApiError the
        send raised, lands in the dict under "sent"."""
        results: dict[str, Operation | ApiError] = {}

        def send() -> None:
            with self.server.api(self.token) as relay:
                try:
                    results["sent"] = relay.run_operation(
                        "send_sms", MESSAGE, idempotency_key=idempotency_key
                    )
                except ApiError as failed:
                    results["sent"] = failed

        thread = threading.Thread(target=send)
        thread.start()
        return thread, results


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    messaging = Messaging()
    with stand_in(messaging) as server_of_providers:
        env = cli_env(
            tmp_path / "home",
            {
                "RELAYKIT_TWILIO_API_BASE": server_of_providers.base_url,
                "RELAYKIT_PLIVO_API_BASE": server_of_providers.base_url,
            },
        )
        run_cli(["tenants", "create", "acme"], env)
        token = (
            run_cli(["tokens", "create", "--tenant", "acme"], env).stdout.strip().splitlines()[-1]
        )
        server = start_server(env, tmp_path / "server.log")
        world = World(server, token, messaging, server_of_providers)
        try:
            yield world
        finally:
            world.api.close()
            stop_server(server)


def test_scenario_3_switch_sms_from_plivo_to_twilio(world: World) -> None:
    plivo = world.configure("plivo", "plivo-token-1")
    made = world.rule(plivo, None)
    first = world.send()
    assert first.status == "succeeded" and first.integration_id == plivo
    twilio = world.configure("twilio", "twilio-token-1")
    # point the rule at Twilio, keep Plivo as the fallback, then disable Plivo
    patched = world.api.update_routing_rule(
        made.id, integration_id=twilio, fallback_integration_id=plivo
    )
    assert (patched.integration_id, patched.fallback_integration_id) == (twilio, plivo)
    assert world.api.disable_integration(plivo).status == "inactive"
    second = world.send()
    assert second.status == "succeeded"
    assert second.integration_id == twilio
    assert second.result["provider_message_id"].startswith("SM")
    assert world.messaging.sends == {"plivo-token-1": 1, "twilio-token-1": 1}


def test_the_primary_503_moves_the_send_to_the_fallback(world: World) -> None:
    twilio = world.configure("twilio", "twilio-down")
    plivo = world.configure("plivo", "plivo-ok")
    world.messaging.mode["twilio-down"] = "down"
    world.rule(twilio, plivo)
    sent = world.send()
    assert sent.status == "succeeded"
    assert sent.integration_id == plivo
    assert [(a.provider, a.outcome, a.provider_status_code) for a in sent.attempts] == [
        ("twilio", "transient", 503),
        ("plivo", "succeeded", 202),
    ]
    assert world.api.list_delivery_attempts(capability="send_sms").meta.total == 2
    assert world.status(twilio) == "active"


def test_a_401_during_a_send_puts_the_primary_in_error_and_the_fallback_serves(
    world: World,
) -> None:
    twilio = world.configure("twilio", "twilio-revoked")
    plivo = world.configure("plivo", "plivo-ok")
    world.messaging.mode["twilio-revoked"] = "revoked"  # revoked after verification
    world.rule(twilio, plivo)
    sent = world.send()
    assert sent.integration_id == plivo
    assert [a.outcome for a in sent.attempts] == ["auth_failed", "succeeded"]
    detail = world.api.get_integration(twilio)
    assert detail.status == "error"
    assert "Authenticate" in detail.metadata["verification"]["error"]


def test_both_disabled_is_no_active_provider(world: World) -> None:
    twilio = world.configure("twilio", "twilio-ok")
    plivo = world.configure("plivo", "plivo-ok")
    world.rule(twilio, plivo)
    for integration_id in (twilio, plivo):
        assert world.api.disable_integration(integration_id).status == "inactive"
    with pytest.raises(OperationFailed) as refused:
        world.send()
    assert refused.value.status_code == 409
    assert refused.value.code == "no_active_provider"
    assert sum(world.messaging.sends.values()) == 0


def test_an_idempotent_repeat_makes_no_second_provider_call(world: World) -> None:
    twilio = world.configure("twilio", "twilio-ok")
    world.rule(twilio, None)
    first = world.send("otp-42")
    again = world.send("otp-42")
    assert first.status == "succeeded"
    assert again == first
    # raw: the repeat is the first answer replayed, status and body, as it came over the wire
    answered, replayed = world.wire.responses[-2:]
    assert answered.status_code == replayed.status_code == 201
    assert answered.json() == replayed.json()
    assert world.messaging.sends["twilio-ok"] == 1


def test_the_same_key_while_the_first_runs_is_409(world: World) -> None:
    twilio = world.configure("twilio", "twilio-slow")
    world.rule(twilio, None)
    world.messaging.mode["twilio-slow"] = "slow"
    first, results = world.send_in_background("k-1")
    wait_for(lambda: world.messaging.sends["twilio-slow"] == 1)
    with pytest.raises(Conflict) as refused:
        world.send("k-1")
    first.join(timeout=30)
    assert refused.value.status_code == 409 and refused.value.code == "idempotency_conflict"
    sent = results["sent"]
    assert isinstance(sent, Operation), sent
    assert sent.status == "succeeded"


def test_disabling_during_an_in_flight_attempt_lets_it_finish(world: World) -> None:
    twilio = world.configure("twilio", "twilio-slow")
    plivo = world.configure("plivo", "plivo-ok")
    world.rule(twilio, plivo)
    world.messaging.mode["twilio-slow"] = "slow"
    sender, results = world.send_in_background()
    wait_for(lambda: world.messaging.sends["twilio-slow"] == 1)  # the attempt is in flight
    assert world.api.disable_integration(twilio).status == "inactive"
    sender.join(timeout=30)
    sent = results["sent"]
    assert isinstance(sent, Operation), sent
    assert sent.status == "succeeded"
    assert sent.integration_id == twilio  # it finished where it started
    assert [a.outcome for a in sent.attempts] == ["succeeded"]
    assert world.messaging.sends["plivo-ok"] == 0
    assert world.status(twilio) == "inactive"  # and the disable stands
    # the next send goes to the fallback
    assert world.send().integration_id == plivo
