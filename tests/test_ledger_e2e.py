"""The operations ledger across a crash: the serving process is killed (SIGKILL) mid-send,
restarted, and the ledger and the Idempotency-Key tell the truth (real server, real Twilio
plugin, a local stand-in of Twilio's API that can hold its answer)."""

from __future__ import annotations

import signal
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from relaykit.client import ApiError, Client, Operation, OperationFailed
from relaykit.testing.standin import StandIn, stand_in

from .conftest import Recorder, Server, cli_env, run_cli, start_server, stop_server
from .messaging_standin import Messaging
from .test_verification_e2e import wait_for

MESSAGE = {"to": "+14155552345", "body": "Your code is 123456"}
# A short deadline, so the dead process's lease (deadline + 5 s) runs out within the test.
LEDGER = {"RELAYKIT_OPERATION_DEADLINE": "2"}


class World:
    def __init__(self, tmp_path: Path, messaging: Messaging, providers: StandIn) -> None:
        self.tmp_path = tmp_path
        self.messaging = messaging
        self.env = cli_env(
            tmp_path / "home",
            {
                **LEDGER,
                "RELAYKIT_TWILIO_API_BASE": providers.base_url,
                "RELAYKIT_PLIVO_API_BASE": providers.base_url,
            },
        )
        run_cli(["tenants", "create", "acme"], self.env)
        created = run_cli(["tokens", "create", "--tenant", "acme"], self.env)
        self.token = created.stdout.strip().splitlines()[-1]
        self.server = self.start()

    def start(self) -> Server:
        self.server = start_server(self.env, self.tmp_path / "server.log")
        return self.server

    def api(self, transport: httpx.BaseTransport | None = None) -> Client:
        return self.server.api(self.token, transport=transport)

    def twilio(self, auth_token: str) -> str:
        with self.api() as relay:
            integration_id = relay.create_integration(
                "twilio",
                {
                    "account_sid": "AC-stand-in",
                    "auth_token": auth_token,
                    "from_number": "+15550100000",
                },
                ["send_sms"],
            ).id
            wait_for(lambda: relay.get_integration(integration_id).status == "active")
            relay.create_routing_rule("send_sms", integration_id, is_default=True)
        return integration_id

    def send_in_background(self, key: str) -> threading.Thread:
        def send() -> None:
            try:
                with self.api() as relay:
                    relay.run_operation("send_sms", MESSAGE, idempotency_key=key)
            except (httpx.HTTPError, ApiError):
                pass  # the server is killed under it

        thread = threading.Thread(target=send)
        thread.start()
        return thread

    def kill(self) -> None:
        self.server.process.send_signal(signal.SIGKILL)
        self.server.process.wait(timeout=10)

    def operation_by_key(self, key: str) -> Operation | None:
        with self.api() as relay:
            found = relay.list_operations(idempotency_key=key).data
        return found[0] if found else None


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    messaging = Messaging()
    with stand_in(messaging) as providers:
        made = World(tmp_path, messaging, providers)
        try:
            yield made
        finally:
            messaging.release.set()
            stop_server(made.server)


def test_a_send_the_provider_accepted_before_the_crash_is_never_sent_again(world: World) -> None:
    world.twilio("tok-hold")
    world.messaging.mode["tok-hold"] = "hold"
    sender = world.send_in_background("otp-4711")
    assert world.messaging.accepted.wait(timeout=30)  # Twilio has the message
    world.kill()  # before relaykit could answer or record the answer
    world.messaging.release.set()
    sender.join(timeout=30)
    world.start()
    operation = world.operation_by_key("otp-4711")
    assert operation is not None
    # The restarted worker settles it once the dead process's lease has run out.
    wait_for(
        lambda: (
            (settling := world.operation_by_key("otp-4711")) is not None
            and settling.status == "outcome_unknown"
        )
    )
    with world.api() as relay:
        settled = relay.get_operation(operation.id)
        [attempt] = settled.attempts
        assert attempt.status == attempt.outcome == "outcome_unknown"
        with pytest.raises(OperationFailed) as retry:
            relay.run_operation("send_sms", MESSAGE, idempotency_key="otp-4711")
    assert retry.value.status_code == 409, retry.value
    assert retry.value.code == "operation_outcome_unknown"
    assert retry.value.operation.id == operation.id
    assert world.messaging.sends["tok-hold"] == 1  # exactly one request reached Twilio


def hold_the_operations_table(database_url: str) -> Any:
    """Another process's transaction that keeps the server from recording a new operation
    (SQLite: its write lock; PostgreSQL: an exclusive lock on the operations table); close
    it to let go."""
    if database_url.startswith("sqlite"):
        holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        return holder
    import psycopg

    holder = psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://"))
    holder.execute("LOCK TABLE operations IN EXCLUSIVE MODE")
    return holder


def test_a_server_killed_before_the_provider_call_sends_once_on_retry(
    world: World, database_url: str
) -> None:
    world.twilio("tok-ok")
    holder = hold_the_operations_table(database_url)
    try:
        sender = world.send_in_background("otp-4712")
        threading.Event().wait(1.0)  # the send is waiting to record its operation
        world.kill()  # before anything was recorded, so before any provider call
    finally:
        holder.rollback()
        holder.close()
    sender.join(timeout=30)
    assert world.messaging.sends["tok-ok"] == 0
    world.start()
    wire = Recorder()
    with world.api(wire) as relay:
        retry = relay.run_operation("send_sms", MESSAGE, idempotency_key="otp-4712")
        assert retry.status == "succeeded", retry
        again = relay.run_operation("send_sms", MESSAGE, idempotency_key="otp-4712")
    assert again == retry  # replayed
    # raw: the replay is the first answer, status and body, as it came over the wire
    answered, replayed = wire.responses
    assert answered.status_code == replayed.status_code == 201
    assert replayed.json() == answered.json()
    assert world.messaging.sends["tok-ok"] == 1
