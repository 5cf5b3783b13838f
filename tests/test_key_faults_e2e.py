"""Key faults end to end over real HTTP: ``relaykit serve`` with its worker, the real Twilio
and Plivo plugins, a local stand-in of both providers, and the test's own hands on the
database and the keyring files.

* A row whose sealed blob fails authentication (another row's blob copied onto it, or one
  byte of its ciphertext flipped) is that integration's fault: a send routed to it falls
  back and succeeds, the row is ``error`` with the reason, a PATCH that needs the old blob
  is a 409 ``credentials_unreadable``, one that replaces its secret brings it back through
  verification, and no answer is a 5xx.
* A key this node does not hold (another node rotated to a key whose keyring has not been
  copied here yet) is the operator's fault: the row waiting for verification stays
  pending however many passes fail, ``/ready`` names the key provider, a send answers 503
  ``key_provider_unavailable`` and reaches no provider; once the keyring is copied here,
  the row is verified and sends go through.

Canary: no secret appears in any answer or in the server's log.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import pytest
import sqlalchemy as sa

from relaykit import tenants as tenant_store
from relaykit.client import ApiError, Conflict, OperationFailed
from relaykit.integrations import IntegrationService
from relaykit.keys import custody, local_key_set
from relaykit.plugins import make_plugin_manager
from relaykit.sealing import read_blob
from relaykit.settings import Settings
from relaykit.storage.database import Database, open_database
from relaykit.storage.models import integrations
from relaykit.testing.standin import stand_in

from .conftest import Recorder, Server, cli_env, run_cli, start_server, stop_server
from .messaging_standin import Messaging
from .test_verification_e2e import wait_for

MESSAGE = {"to": "+14155552345", "body": "Your code is 123456"}
TWILIO_SECRET = "twilioCanarySecret7a1b9c"
PLIVO_SECRET = "plivoCanarySecret3d4e5f"
TWILIO_NEW = "twilioCanaryReplaced0c2d"
PLIVO_NEW = "plivoCanaryReplaced8e6a"
CANARIES = (TWILIO_SECRET, PLIVO_SECRET, TWILIO_NEW, PLIVO_NEW)
UNREADABLE = "The stored credentials cannot be opened"


class World:
    def __init__(self, server: Server, token: str, messaging: Messaging, env: dict[str, str]):
        self.server = server
        self.messaging = messaging
        self.env = env
        self.settings = Settings.from_env(env)
        self.database: Database = open_database(self.settings, migrate=False)
        self.wire = Recorder()  # every answer, as it came over the wire
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
            ["send_sms"],
        )
        wait_for(lambda: self.status(integration.id) == "active")
        return integration.id

    def status(self, integration_id: str) -> str:
        return self.api.get_integration(integration_id).status

    def send(self) -> Any:
        return self.api.run_operation("send_sms", MESSAGE)

    def blob(self, integration_id: str) -> bytes:
        return bytes(
            self.database.read_blocking(
                lambda conn: conn.execute(
                    sa.select(integrations.c.sealed_credentials).where(
                        integrations.c.id == integration_id
                    )
                ).scalar_one()
            )
        )

    def store_blob(self, integration_id: str, blob: bytes) -> None:
        self.database.transaction_blocking(
            lambda conn: conn.execute(
                integrations.update()
                .where(integrations.c.id == integration_id)
                .values(sealed_credentials=blob)
            )
        )

    def assert_clean(self, allowed_503: frozenset[str] = frozenset()) -> None:
        """No answer a 5xx but the 503s named; no secret in any answer or the server log."""
        assert self.wire.responses, "nothing was recorded"
        for response in self.wire.responses:
            if response.status_code >= 500:
                assert response.status_code == 503, response.text
                assert response.json()["code"] in allowed_503, response.text
            for canary in CANARIES:
                assert canary not in response.text, (response.request.url, canary)
        log = self.server.log.read_text()
        for canary in CANARIES:
            assert canary not in log, canary


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    messaging = Messaging()
    with stand_in(messaging) as providers:
        env = cli_env(
            tmp_path / "home",
            {
                "RELAYKIT_TWILIO_API_BASE": providers.base_url,
                "RELAYKIT_PLIVO_API_BASE": providers.base_url,
                "RELAYKIT_WORKER_POLL": "0.1",
                "RELAYKIT_WORKER_HEARTBEAT": "1",
                "RELAYKIT_VERIFY_BACKOFF_BASE": "0.05",
                "RELAYKIT_VERIFY_BACKOFF_MAX": "0.2",
                "RELAYKIT_VERIFY_MAX_ATTEMPTS": "2",
            },
        )
        run_cli(["tenants", "create", "acme"], env)
        token = (
            run_cli(["tokens", "create", "--tenant", "acme"], env).stdout.strip().splitlines()[-1]
        )
        server = start_server(env, tmp_path / "server.log")
        world = World(server, token, messaging, env)
        try:
            yield world
        finally:
            world.api.close()
            world.database.dispose()
            stop_server(server)


def flip_one_byte(blob: bytes) -> bytes:
    """The blob with one byte of its fields' ciphertext flipped: it still decodes."""
    parsed = read_blob(blob)
    middle = len(parsed.ciphertext) // 2
    ciphertext = bytearray(parsed.ciphertext)
    ciphertext[middle] ^= 0x04
    return msgspec.msgpack.encode(msgspec.structs.replace(parsed, ciphertext=bytes(ciphertext)))


def test_unreadable_blobs_fall_back_go_to_error_and_come_back_with_a_new_secret(
    world: World,
) -> None:
    twilio = world.configure("twilio", TWILIO_SECRET)
    plivo = world.configure("plivo", PLIVO_SECRET)
    rule = world.api.create_routing_rule(
        "send_sms", twilio, fallback_integration_id=plivo, is_default=True, priority=100
    )
    assert world.send().integration_id == twilio
    assert world.messaging.sends == {TWILIO_SECRET: 1}

    # 1. Plivo's blob copied onto Twilio's row: the send falls back to Plivo and succeeds.
    world.store_blob(twilio, world.blob(plivo))
    sent = world.send()
    assert sent.status == "succeeded" and sent.integration_id == plivo
    assert [(a.provider, a.outcome, a.provider_status_code) for a in sent.attempts] == [
        ("twilio", "auth_failed", None),
        ("plivo", "succeeded", 202),
    ]
    assert "nothing was sent" in sent.attempts[0].message
    assert world.messaging.sends == {TWILIO_SECRET: 1, PLIVO_SECRET: 1}  # none on Twilio
    broken = world.api.get_integration(twilio)
    assert broken.status == "error"
    assert broken.metadata["verification"]["error"].startswith(UNREADABLE)
    # no longer routed to
    assert [a.provider for a in world.send().attempts] == ["plivo"]

    # 2. A PATCH that needs the old blob (public fields only) is a 409 that says what to do.
    with pytest.raises(Conflict) as refused:
        world.api.update_integration(twilio, credentials={"from_number": "+15550100009"})
    assert refused.value.status_code == 409 and refused.value.code == "credentials_unreadable"
    assert "Send every sensitive credential field again" in refused.value.message
    assert world.status(twilio) == "error"

    # 3. A new secret (every sensitive field): pending, verified by the worker, routed again.
    replaced = world.api.update_integration(twilio, credentials={"auth_token": TWILIO_NEW})
    assert replaced.status == "pending_verify"
    wait_for(lambda: world.status(twilio) == "active")
    again = world.send()
    assert again.integration_id == twilio and [a.provider for a in again.attempts] == ["twilio"]
    assert world.messaging.sends[TWILIO_NEW] == 1

    # 4. One byte flipped in Plivo's ciphertext, Plivo made the primary: falls back to Twilio.
    world.store_blob(plivo, flip_one_byte(world.blob(plivo)))
    world.api.update_routing_rule(rule.id, integration_id=plivo, fallback_integration_id=twilio)
    sends_before = dict(world.messaging.sends)
    flipped = world.send()
    assert flipped.status == "succeeded" and flipped.integration_id == twilio
    assert [(a.provider, a.outcome) for a in flipped.attempts] == [
        ("plivo", "auth_failed"),
        ("twilio", "succeeded"),
    ]
    assert world.messaging.sends[PLIVO_SECRET] == sends_before[PLIVO_SECRET]
    plivo_view = world.api.get_integration(plivo)
    assert plivo_view.status == "error"
    assert plivo_view.metadata["verification"]["error"].startswith(UNREADABLE)
    with pytest.raises(Conflict):
        world.api.update_integration(plivo, credentials={"auth_id": "plivo-account-2"})
    world.api.update_integration(
        plivo, credentials={"auth_id": "plivo-account-2", "auth_token": PLIVO_NEW}
    )
    wait_for(lambda: world.status(plivo) == "active")
    assert world.send().integration_id == plivo
    assert world.messaging.sends[PLIVO_NEW] == 1

    events = world.api.list_audit_events(action="integration.credentials_unreadable")
    assert sorted(e.integration_id for e in events.data) == sorted([twilio, plivo])
    world.assert_clean()


def test_a_key_this_node_does_not_hold_is_the_operators_fault(world: World, tmp_path: Path) -> None:
    """Another node rotates to a key of its own keyring and seals under it (a new
    integration, and new credentials for the one sends go through); this server does not
    hold that key until the keyring is copied here."""
    served = world.configure("twilio", TWILIO_SECRET)
    world.api.create_routing_rule("send_sms", served, is_default=True, priority=100)

    # the other node: its own copy of the keyring, rotated (the database records the key)
    other_keyring = tmp_path / "other-node" / "keyring.json"
    other_keyring.parent.mkdir(mode=0o700)
    shutil.copy2(world.settings.keyring, other_keyring)
    other = msgspec.structs.replace(world.settings, keyring=other_keyring)
    keys = local_key_set(other, world.database)
    custody.rotate(keys, "local")
    service = IntegrationService(world.database, make_plugin_manager(environ={}).catalog(), keys)
    tenant = world.database.read_blocking(tenant_store.get_tenant, "acme")
    pending = anyio.run(
        service.create,
        tenant.id,
        {
            "provider": "plivo",
            "credentials": {
                "auth_id": "plivo-account",
                "auth_token": PLIVO_SECRET,
                "from_number": "+15550100000",
            },
            "enabled_capabilities": ["send_sms"],
        },
    )
    assert pending.status == "pending_verify"
    replaced = anyio.run(
        service.update, tenant.id, served, {"credentials": {"auth_token": TWILIO_NEW}}
    )
    assert replaced.status == "pending_verify"
    # (as if verified on the other node: this one cannot open it)
    world.database.transaction_blocking(
        lambda conn: conn.execute(
            integrations.update().where(integrations.c.id == served).values(status="active")
        )
    )

    # this node: the pending row stays pending however many checks fail; none counts
    log = world.server.log

    def failed_checks() -> int:
        return log.read_text().count(f"could not open the credentials of integration {pending.id}")

    wait_for(lambda: failed_checks() >= 4)
    row = world.database.read_blocking(
        lambda conn: conn.execute(
            sa.select(integrations).where(integrations.c.id == pending.id)
        ).one()
    )
    assert row.status == "pending_verify" and row.verify_attempts == 0  # the limit is 2
    assert "does not count" in row.verification["last_error"]

    # new credentials here must be sealed under the database's primary key: a 503 once this
    # node has read it (it reads it again at most every second), nothing stored
    refusals: list[ApiError] = []

    def sealing_refused() -> bool:
        try:
            made = world.api.create_integration(
                "stripe", {"publishable_key": "pk_test_1", "secret_key": "sk_test_1"}, []
            )
        except ApiError as refused:
            refusals.append(refused)
            return True
        world.api.delete_integration(made.id)  # sealed before this node saw the rotation
        return False

    wait_for(sealing_refused)
    assert (refusals[0].status_code, refusals[0].code) == (503, "key_provider_unavailable")

    def not_ready_for_the_key() -> bool:
        answer = httpx.get(f"{world.server.base_url}/ready", timeout=5)
        checks = answer.json()["data"]["checks"]
        return answer.status_code == 503 and not checks["key_provider"]["ok"]

    wait_for(not_ready_for_the_key)

    # a send through an integration sealed under the missing key: 503, nothing sent
    with pytest.raises(OperationFailed) as unavailable:
        world.send()
    assert unavailable.value.status_code == 503
    assert unavailable.value.code == "key_provider_unavailable"
    operation = unavailable.value.operation
    assert operation.status == "failed"
    assert [a.outcome for a in operation.attempts] == ["transient"]
    assert world.api.get_operation(operation.id).status == "failed"
    assert TWILIO_NEW not in world.messaging.sends  # nothing reached the provider
    assert world.status(served) == "active"  # not the tenant's fault

    # the keyring copied to this node, as docs/deployment.md says: it recovers
    copied = world.settings.keyring.with_name("keyring.json.new")
    shutil.copy2(other_keyring, copied)
    os.replace(copied, world.settings.keyring)
    wait_for(lambda: world.status(pending.id) == "active")
    wait_for(lambda: httpx.get(f"{world.server.base_url}/ready", timeout=5).status_code == 200)
    sent = world.send()
    assert sent.integration_id == served and world.messaging.sends[TWILIO_NEW] == 1
    world.assert_clean(frozenset({"key_provider_unavailable"}))
