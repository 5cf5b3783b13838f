"""relaykit.client against the real server: the real plugins through their entry points, and
local stand-ins of Twilio, Plivo and Stripe over real HTTP.

One walk through the API runs twice: through ``Client``, and through ``AsyncClient`` on an
event loop of its own (a blocking portal), so every live answer is decoded into its
:mod:`relaykit.wire` Struct by both.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal

from relaykit.capabilities import SendMessageInput
from relaykit.client import (
    AsyncClient,
    Client,
    Conflict,
    InvalidRequest,
    NotFound,
    OperationFailed,
    Unauthenticated,
)
from relaykit.testing.standin import Answer, StandInRequest, stand_in

from .conftest import REPO, cli_env, run_cli, start_server, stop_server
from .messaging_standin import Messaging
from .stripe_standin import StripeBehaviour
from .test_verification_e2e import wait_for

#: ``call("get_integration", id)``: one client's method by name; an iterator comes back as
#: a list, whichever client it is.
Caller = Callable[..., Any]
Connect = Callable[[str], Caller]

TWILIO = {
    "account_sid": "AC-client-e2e",
    "auth_token": "twilio-token",
    "from_number": "+15550100000",
}
PLIVO = {"auth_id": "MA-client-e2e", "auth_token": "plivo-token", "from_number": "+15550100001"}
STRIPE = {"publishable_key": "pk_test_placeholder", "secret_key": "sk_test_good_client_e2e"}
MESSAGE = SendMessageInput(to="+14155552345", body="Your code is 123456")


class World:
    def __init__(self, base_url: str, token: str, messaging: Messaging) -> None:
        self.base_url = base_url
        self.token = token
        self.messaging = messaging


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    messaging, stripe = Messaging(), StripeBehaviour()

    def providers(request: StandInRequest) -> Answer:  # their paths do not overlap
        return stripe(request) if request.path == "/v1/balance" else messaging(request)

    with stand_in(providers) as providers_server:
        base = providers_server.base_url
        env = cli_env(
            tmp_path / "home",
            {
                "RELAYKIT_TWILIO_API_BASE": base,
                "RELAYKIT_PLIVO_API_BASE": base,
                "RELAYKIT_STRIPE_API_BASE": base,
            },
        )
        run_cli(["tenants", "create", "acme"], env)
        token = run_cli(["tokens", "create", "--tenant", "acme"], env).stdout.splitlines()[-1]
        server = start_server(env, tmp_path / "server.log")
        try:
            yield World(server.base_url, token.strip(), messaging)
        finally:
            stop_server(server)


@contextmanager
def sync_clients(base_url: str) -> Iterator[Connect]:
    with ExitStack() as opened:

        def connect(token: str) -> Caller:
            client = opened.enter_context(Client(base_url, token))

            def call(name: str, *args: Any, **kwargs: Any) -> Any:
                result = getattr(client, name)(*args, **kwargs)
                return list(result) if name.startswith("iter_") else result

            return call

        yield connect


@contextmanager
def async_clients(base_url: str) -> Iterator[Connect]:
    """AsyncClients living on an event loop in another thread; each call waits for its
    coroutine there (exceptions come back as they were raised)."""
    with start_blocking_portal() as portal, ExitStack() as opened:

        def connect(token: str) -> Caller:
            client = AsyncClient(base_url, token)
            opened.callback(portal.call, client.aclose)

            async def run(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
                if name.startswith("iter_"):
                    return [item async for item in getattr(client, name)(*args, **kwargs)]
                return await getattr(client, name)(*args, **kwargs)

            def call(name: str, *args: Any, **kwargs: Any) -> Any:
                return portal.call(run, name, args, kwargs)

            return call

        yield connect


@pytest.fixture(params=["Client", "AsyncClient"])
def connect(request: pytest.FixtureRequest, world: World) -> Iterator[Connect]:
    clients = sync_clients if request.param == "Client" else async_clients
    with clients(world.base_url) as connect:
        yield connect


def configured(call: Caller, provider: str, credentials: dict[str, str], caps: list[str]) -> Any:
    created = call("create_integration", provider, credentials, caps)
    assert created.status == "pending_verify"
    return wait_for(lambda: (i := call("get_integration", created.id)).status == "active" and i)


def test_the_walk_through_the_api(world: World, connect: Connect) -> None:
    call = connect(world.token)

    # the catalog: every shipped provider, none configured yet
    providers = {p.name: p for p in call("list_providers")}
    assert {"stripe", "twilio", "plivo"} <= providers.keys()
    assert providers["twilio"].credential_schema["auth_token"].sensitive is True
    assert providers["twilio"].is_configured is False

    # a wrong token, a bad body, an unknown id: each its own error
    with pytest.raises(Unauthenticated) as unauthenticated:
        connect("not-a-token")("list_providers")
    assert (unauthenticated.value.status_code, unauthenticated.value.code) == (
        401,
        "unauthenticated",
    )
    without_token = {k: v for k, v in TWILIO.items() if k != "auth_token"}
    with pytest.raises(InvalidRequest) as invalid:
        call("create_integration", "twilio", without_token, ["send_sms", "fax"])
    assert invalid.value.status_code == 422 and invalid.value.code is None
    assert "credentials.auth_token" in invalid.value.errors
    assert "enabled_capabilities" in invalid.value.errors
    with pytest.raises(NotFound) as missing:
        call("get_integration", "01" + "0" * 24)
    assert (missing.value.status_code, missing.value.code) == (404, "not_found")

    # Twilio: configured, verified by the worker, then routed to
    created = call("create_integration", "twilio", TWILIO, ["send_sms"], metadata={"env": "e2e"})
    assert created.status == "pending_verify" and created.credentials["auth_token"] is None
    twilio = wait_for(lambda: (i := call("get_integration", created.id)).status == "active" and i)
    assert twilio.verified_at is not None and twilio.metadata["env"] == "e2e"
    rule = call("create_routing_rule", "send_sms", twilio.id, is_default=True, priority=100)
    assert (rule.integration_id, rule.is_default, rule.priority) == (twilio.id, True, 100)
    assert rule.fallback_integration_id is None

    # an SMS with an idempotency key; the repeat replays it without a second provider call
    sent = call("run_operation", "send_sms", MESSAGE, idempotency_key="otp-client-1")
    assert (sent.status, sent.integration_id) == ("succeeded", twilio.id)
    assert sent.result["provider_message_id"].startswith("SM")
    again = call("run_operation", "send_sms", MESSAGE, idempotency_key="otp-client-1")
    assert again.id == sent.id and world.messaging.sends == {"twilio-token": 1}

    # ...and read back from the ledger and the delivery attempts
    recorded = call("get_operation", sent.id)
    assert (recorded.status, recorded.idempotency_key) == ("succeeded", "otp-client-1")
    assert call("list_operations", idempotency_key="otp-client-1").data[0].id == sent.id
    assert [o.id for o in call("iter_operations", capability="send_sms")] == [sent.id]
    attempts = call("list_delivery_attempts", operation_id=sent.id)
    assert attempts.meta.total == 1 and [a.id for a in attempts.data] == [sent.attempts[0].id]
    attempt = call("get_delivery_attempt", attempts.data[0].id)
    assert (attempt.operation_id, attempt.outcome, attempt.provider) == (
        sent.id,
        "succeeded",
        "twilio",
    )

    # three integrations, one a page: the iterator follows links.next to the end
    plivo = configured(call, "plivo", PLIVO, ["send_sms"])
    stripe = configured(call, "stripe", STRIPE, ["initiate_payment"])
    first = call("list_integrations", per_page=1)
    assert (first.meta.total, first.meta.last_page, len(first.data)) == (3, 3, 1)
    assert first.links.next is not None and first.links.prev is None
    every = call("iter_integrations", per_page=1)
    assert sorted(i.id for i in every) == sorted([twilio.id, plivo.id, stripe.id])
    talking = call("iter_integrations", category="communication", per_page=1)
    assert {i.provider for i in talking} == {"twilio", "plivo"}

    # updates keep what was not sent
    updated = call("update_integration", twilio.id, metadata={"env": "prod"})
    assert updated.metadata["env"] == "prod" and updated.status == "active"
    assert updated.enabled_capabilities == ["send_sms"]
    moved = call("update_routing_rule", rule.id, fallback_integration_id=plivo.id, priority=5)
    assert (moved.fallback_integration_id, moved.priority, moved.is_default) == (plivo.id, 5, True)
    assert [r.id for r in call("iter_routing_rules", capability="send_sms", per_page=1)] == [
        rule.id
    ]
    assert call("list_routing_rules", capability="initiate_payment").meta.total == 0

    # nothing active to route to: a failed operation, with what was tried
    assert call("disable_integration", twilio.id).status == "inactive"
    assert call("disable_integration", plivo.id).status == "inactive"
    with pytest.raises(Conflict) as already:
        call("disable_integration", plivo.id)
    assert "already inactive" in already.value.message
    with pytest.raises(OperationFailed) as failed:
        call("run_operation", "send_sms", MESSAGE, idempotency_key="otp-client-2")
    assert (failed.value.status_code, failed.value.code) == (409, "no_active_provider")
    assert failed.value.operation.status == "failed" and failed.value.operation.attempts == []
    assert call("activate_integration", twilio.id).status == "active"

    # deletes
    call("delete_routing_rule", rule.id)
    with pytest.raises(NotFound):
        call("get_routing_rule", rule.id)
    assert call("delete_integration", stripe.id) is None
    with pytest.raises(NotFound):
        call("get_integration", stripe.id)
    assert {i.id for i in call("iter_integrations")} == {twilio.id, plivo.id}


def test_the_walk_of_docs_client_md_runs_as_written(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    guide = (REPO / "docs" / "client.md").read_text()
    walk = re.search(r"## A first walk.*?```python\n(.*?)```", guide, flags=re.S)
    assert walk is not None
    monkeypatch.setenv("TOKEN", world.token)
    exec(walk.group(1).replace("http://127.0.0.1:8000", world.base_url), {})  # noqa: S102
    printed = capsys.readouterr().out
    assert "401 unauthenticated" in printed
    # the README's placeholder key: the Stripe stand-in refuses it, as Stripe would
    assert "error {" in printed and "1 ['stripe']" in printed
