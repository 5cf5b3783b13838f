"""Routing end to end over real HTTP: the server with its worker, the real Twilio and Plivo
plugins, and a local stand-in of both providers. The contract's Scenario 3 (moving SMS from
Plivo to Twilio) is the backbone."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from relaykit.testing.standin import StandIn, stand_in

from .conftest import Server, cli_env, run_cli, start_server, stop_server
from .messaging_standin import Messaging
from .test_verification_e2e import wait_for

SMS = "/api/v1/operations/send_sms"
MESSAGE = {"to": "+14155552345", "body": "Your code is 123456"}


class World:
    def __init__(self, server: Server, token: str, messaging: Messaging, stand_in: StandIn):
        self.server = server
        self.token = token
        self.messaging = messaging
        self.stand_in = stand_in
        self.client = server.client(token)

    def configure(self, provider: str, auth_token: str) -> str:
        identity = {"twilio": "account_sid", "plivo": "auth_id"}[provider]
        response = self.client.post(
            "/api/v1/integrations",
            json={
                "provider": provider,
                "credentials": {
                    identity: f"{provider}-account",
                    "auth_token": auth_token,
                    "from_number": "+15550100000",
                },
                "enabled_capabilities": ["send_sms", "send_whatsapp"],
            },
        )
        assert response.status_code == 201, response.text
        integration_id = str(response.json()["data"]["id"])
        wait_for(lambda: self.status(integration_id) == "active")
        return integration_id

    def status(self, integration_id: str) -> str:
        return str(
            self.client.get(f"/api/v1/integrations/{integration_id}").json()["data"]["status"]
        )

    def rule(self, primary: str, fallback: str | None) -> dict[str, Any]:
        response = self.client.post(
            "/api/v1/routing-rules",
            json={
                "capability": "send_sms",
                "integration_id": primary,
                "fallback_integration_id": fallback,
                "is_default": True,
                "priority": 100,
            },
        )
        assert response.status_code == 201, response.text
        return response.json()["data"]  # type: ignore[no-any-return]

    def send(self, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.client.post(SMS, json=MESSAGE, headers=headers or {})

    def send_in_background(
        self, headers: dict[str, str] | None = None
    ) -> tuple[threading.Thread, dict[str, httpx.Response]]:
        """Send from another thread (its own connection); the response lands in the dict."""
        results: dict[str, httpx.Response] = {}

        def send() -> None:
            with self.server.client(self.token) as client:
                results["response"] = client.post(SMS, json=MESSAGE, headers=headers or {})

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
            world.client.close()
            stop_server(server)


def test_scenario_3_switch_sms_from_plivo_to_twilio(world: World) -> None:
    plivo = world.configure("plivo", "plivo-token-1")
    made = world.rule(plivo, None)
    first = world.send()
    assert first.status_code == 201 and first.json()["data"]["integration_id"] == plivo
    twilio = world.configure("twilio", "twilio-token-1")
    # point the rule at Twilio, keep Plivo as the fallback, then disable Plivo
    patched = world.client.patch(
        f"/api/v1/routing-rules/{made['id']}",
        json={"integration_id": twilio, "fallback_integration_id": plivo},
    )
    assert patched.status_code == 200
    assert world.client.post(f"/api/v1/integrations/{plivo}/disable").status_code == 200
    second = world.send()
    assert second.status_code == 201
    data = second.json()["data"]
    assert data["integration_id"] == twilio
    assert data["result"]["provider_message_id"].startswith("SM")
    assert world.messaging.sends == {"plivo-token-1": 1, "twilio-token-1": 1}


def test_the_primary_503_moves_the_send_to_the_fallback(world: World) -> None:
    twilio = world.configure("twilio", "twilio-down")
    plivo = world.configure("plivo", "plivo-ok")
    world.messaging.mode["twilio-down"] = "down"
    world.rule(twilio, plivo)
    response = world.send()
    assert response.status_code == 201
    data = response.json()["data"]
    assert data["integration_id"] == plivo
    assert [(a["provider"], a["outcome"], a["provider_status_code"]) for a in data["attempts"]] == [
        ("twilio", "transient", 503),
        ("plivo", "succeeded", 202),
    ]
    listed = world.client.get("/api/v1/delivery-attempts", params={"capability": "send_sms"}).json()
    assert listed["meta"]["total"] == 2
    assert world.status(twilio) == "active"


def test_a_401_during_a_send_puts_the_primary_in_error_and_the_fallback_serves(
    world: World,
) -> None:
    twilio = world.configure("twilio", "twilio-revoked")
    plivo = world.configure("plivo", "plivo-ok")
    world.messaging.mode["twilio-revoked"] = "revoked"  # revoked after verification
    world.rule(twilio, plivo)
    data = world.send().json()["data"]
    assert data["integration_id"] == plivo
    assert [a["outcome"] for a in data["attempts"]] == ["auth_failed", "succeeded"]
    detail = world.client.get(f"/api/v1/integrations/{twilio}").json()["data"]
    assert detail["status"] == "error"
    assert "Authenticate" in detail["metadata"]["verification"]["error"]


def test_both_disabled_is_no_active_provider(world: World) -> None:
    twilio = world.configure("twilio", "twilio-ok")
    plivo = world.configure("plivo", "plivo-ok")
    world.rule(twilio, plivo)
    for integration_id in (twilio, plivo):
        assert (
            world.client.post(f"/api/v1/integrations/{integration_id}/disable").status_code == 200
        )
    response = world.send()
    assert response.status_code == 409
    assert response.json()["code"] == "no_active_provider"
    assert sum(world.messaging.sends.values()) == 0


def test_an_idempotent_repeat_makes_no_second_provider_call(world: World) -> None:
    twilio = world.configure("twilio", "twilio-ok")
    world.rule(twilio, None)
    first = world.send({"Idempotency-Key": "otp-42"})
    again = world.send({"Idempotency-Key": "otp-42"})
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert world.messaging.sends["twilio-ok"] == 1


def test_the_same_key_while_the_first_runs_is_409(world: World) -> None:
    twilio = world.configure("twilio", "twilio-slow")
    world.rule(twilio, None)
    world.messaging.mode["twilio-slow"] = "slow"
    results: dict[str, httpx.Response] = {}
    first = threading.Thread(
        target=lambda: results.setdefault(
            "first",
            world.server.client(world.client.headers["authorization"].split()[1]).post(
                SMS, json=MESSAGE, headers={"Idempotency-Key": "k-1"}
            ),
        )
    )
    first.start()
    wait_for(lambda: world.messaging.sends["twilio-slow"] == 1)
    second = world.send({"Idempotency-Key": "k-1"})
    first.join(timeout=30)
    assert second.status_code == 409 and second.json()["code"] == "idempotency_conflict"
    assert results["first"].status_code == 201


def test_disabling_during_an_in_flight_attempt_lets_it_finish(world: World) -> None:
    twilio = world.configure("twilio", "twilio-slow")
    plivo = world.configure("plivo", "plivo-ok")
    world.rule(twilio, plivo)
    world.messaging.mode["twilio-slow"] = "slow"
    sender, results = world.send_in_background()
    wait_for(lambda: world.messaging.sends["twilio-slow"] == 1)  # the attempt is in flight
    disabled = world.client.post(f"/api/v1/integrations/{twilio}/disable")
    assert disabled.status_code == 200 and disabled.json()["data"]["status"] == "inactive"
    sender.join(timeout=30)
    response = results["response"]
    assert response.status_code == 201
    data = response.json()["data"]
    assert data["integration_id"] == twilio  # it finished where it started
    assert [a["outcome"] for a in data["attempts"]] == ["succeeded"]
    assert world.messaging.sends["plivo-ok"] == 0
    assert world.status(twilio) == "inactive"  # and the disable stands
    # the next send goes to the fallback
    assert world.send().json()["data"]["integration_id"] == plivo
