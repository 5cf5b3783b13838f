"""Dispatch outcomes in core: routing, fallback, the integration moved to error, idempotency
and the delivery attempts recorded. Real database, sealing and plugin manager; the providers'
HTTP is faked at the transport only."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import msgspec
import pytest
import sqlalchemy as sa

from relaykit import (
    MessageResult,
    OperationContext,
    OperationResult,
    SendMessageInput,
    classify_operation_response,
    tenants,
)
from relaykit.audit import AuditService
from relaykit.deliveries import DeliveryAttemptService
from relaykit.dispatch import Dispatcher, DispatchResponse, IdempotencyConflict
from relaykit.errors import ValidationError
from relaykit.integrations import CREDENTIALS_UNREADABLE_MESSAGE, IntegrationService
from relaykit.keys import local_key_set
from relaykit.plugins import make_plugin_manager
from relaykit.providers import Credentials
from relaykit.routing import RoutingService
from relaykit.sealing import read_blob
from relaykit.settings import Settings
from relaykit.storage.database import Database
from relaykit.storage.models import integrations
from relaykit.testing.databases import stored_text

from .providers_for_tests import OneProvider, make_provider, mark_active

pytestmark = pytest.mark.anyio

SMS = "send_sms"
MESSAGE = {"to": "+15550100001", "body": "Your code is 123456"}
SECRET = "tok_canary_dispatch_9f8e7d"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def send_over_http(
    payload: SendMessageInput, credentials: Credentials, ctx: OperationContext
) -> OperationResult:
    """send_sms as a provider package writes it: one POST, the answer classified by status."""
    response = await ctx.http.post(
        "/messages",
        json={"to": payload.to, "body": payload.body},
        headers={
            "Authorization": f"Bearer {credentials['api_key']}",
            "Idempotency-Key": ctx.idempotency_key,
        },
    )
    failed = classify_operation_response(
        response, error_message=lambda body: body.get("message") if isinstance(body, dict) else None
    )
    if failed is not None:
        return failed
    return OperationResult.succeeded(
        MessageResult(
            provider_message_id=response.json()["sid"],
            provider_status="queued",
            to=payload.to,
            from_="+15550100000",
        ),
        status_code=response.status_code,
    )


Answer = Callable[[httpx.Request], Any]  # a Response, or an awaitable of one; or it raises


class Stage:
    """A tenant, two SMS providers (alpha and bravo) answering through ``answers``, and the
    core services a dispatch goes through."""

    def __init__(self, settings: Settings, database: Database) -> None:
        providers = [
            make_provider(name, operations={SMS: send_over_http}) for name in ("alpha", "bravo")
        ]
        catalog = make_plugin_manager(
            load_entrypoints=False, plugins=[("sms", OneProvider(*providers))]
        ).catalog()
        self.settings = settings
        self.database = database
        self.integrations = IntegrationService(database, catalog, local_key_set(settings, database))
        self.routing = RoutingService(database, catalog)
        self.dispatcher = Dispatcher(
            settings,
            database,
            catalog,
            self.integrations.key_provider,
            self.routing,
            transport=httpx.MockTransport(self._answer),
        )
        self.deliveries = DeliveryAttemptService(database, catalog)
        self.tenant_id = database.transaction_blocking(tenants.create_tenant, "acme").id
        #: what each provider answers (by name); a 201 with a message id unless set
        self.answers: dict[str, Answer] = {}
        #: every request a provider received, as (provider, request)
        self.calls: list[tuple[str, httpx.Request]] = []

    async def _answer(self, request: httpx.Request) -> httpx.Response:
        provider = request.url.host.split(".")[1]  # api.<name>.example
        self.calls.append((provider, request))
        answer = self.answers.get(provider, lambda r: httpx.Response(201, json={"sid": "m-1"}))
        response = answer(request)
        return await response if inspect.isawaitable(response) else response

    def called(self) -> list[str]:
        return [provider for provider, _ in self.calls]

    async def integration(self, provider: str) -> str:
        """An active integration for ``provider`` with send_sms enabled and a sealed key."""
        created = await self.integrations.create(
            self.tenant_id,
            {
                "provider": provider,
                "credentials": {"api_key": f"{SECRET}-{provider}", "account": provider},
                "enabled_capabilities": [SMS],
            },
        )
        await mark_active(self.database, created.id)
        return created.id

    async def primary_with_fallback(self) -> tuple[str, str]:
        """alpha's integration, with bravo's as its fallback, as the send_sms default."""
        alpha, bravo = await self.integration("alpha"), await self.integration("bravo")
        await self.routing.create(
            self.tenant_id,
            {
                "capability": SMS,
                "integration_id": alpha,
                "fallback_integration_id": bravo,
                "is_default": True,
            },
        )
        return alpha, bravo

    async def send(
        self, payload: dict[str, Any] = MESSAGE, key: str | None = None
    ) -> DispatchResponse:
        return await self.dispatcher.dispatch(self.tenant_id, SMS, payload, key)

    async def attempts(self) -> list[dict[str, Any]]:
        return (await self.deliveries.list(self.tenant_id)).items

    async def status(self, integration_id: str) -> str:
        return (await self.integrations.get(self.tenant_id, integration_id)).status


@pytest.fixture
async def stage(settings: Settings, database: Database) -> AsyncIterator[Stage]:
    stage = Stage(settings, database)
    yield stage
    await stage.dispatcher.aclose()


def failing(status: int, message: str, **headers: str) -> Answer:
    return lambda request: httpx.Response(status, json={"message": message}, headers=headers)


def raising(error: type[httpx.TransportError]) -> Answer:
    def answer(request: httpx.Request) -> httpx.Response:
        raise error("faked", request=request)

    return answer


def summary(attempts: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (a["integration_id"], a["provider"], a["status"], a["outcome"], a["provider_status_code"])
        for a in attempts
    ]


# -- served ----------------------------------------------------------------------------------


async def test_served_by_the_first_integration(stage: Stage) -> None:
    alpha, _ = await stage.primary_with_fallback()
    response = await stage.send()

    assert (response.status_code, response.success, response.code) == (201, True, None)
    operation = response.data
    assert operation["status"] == "succeeded" and operation["integration_id"] == alpha
    assert operation["result"]["provider_message_id"] == "m-1"
    assert operation["error"] is None
    [(provider, request)] = stage.calls
    assert provider == "alpha"
    assert request.headers["authorization"] == f"Bearer {SECRET}-alpha"  # unsealed for the call
    assert request.headers["idempotency-key"] == operation["id"]  # no client key: the op id

    attempts = await stage.attempts()
    assert summary(attempts) == [(alpha, "alpha", "succeeded", "succeeded", 201)]
    assert attempts[0]["operation_id"] == operation["id"] and attempts[0]["message"] == "OK"
    assert operation["attempts"] == attempts  # the answer shows what was recorded


async def test_a_transient_failure_falls_back(stage: Stage) -> None:
    alpha, bravo = await stage.primary_with_fallback()
    stage.answers["alpha"] = failing(503, "maintenance", **{"Retry-After": "30"})
    response = await stage.send()

    assert response.status_code == 201 and response.data["integration_id"] == bravo
    assert stage.called() == ["alpha", "bravo"]
    keys = {request.headers["idempotency-key"] for _, request in stage.calls}
    assert keys == {response.data["id"]}  # one key for every try of one operation
    attempts = await stage.attempts()
    assert summary(attempts) == [
        (alpha, "alpha", "failed", "transient", 503),
        (bravo, "bravo", "succeeded", "succeeded", 201),
    ]
    assert attempts[0]["message"] == "maintenance"
    assert await stage.status(alpha) == "active"  # a transient failure changes nothing


async def test_refused_credentials_move_the_integration_to_error_then_fall_back(
    stage: Stage,
) -> None:
    alpha, bravo = await stage.primary_with_fallback()
    # the provider echoes the key it refused: it must not be kept anywhere
    stage.answers["alpha"] = failing(401, f"invalid key {SECRET}-alpha")
    response = await stage.send()

    assert response.status_code == 201 and response.data["integration_id"] == bravo
    attempts = await stage.attempts()
    assert summary(attempts) == [
        (alpha, "alpha", "failed", "auth_failed", 401),
        (bravo, "bravo", "succeeded", "succeeded", 201),
    ]
    assert attempts[0]["message"] == "invalid key [redacted]"

    refused = await stage.integrations.get(stage.tenant_id, alpha)
    assert refused.status == "error"
    record = refused.metadata["verification"]
    assert record["outcome"] == "auth_failed"
    assert record["operation_id"] == response.data["id"]
    assert record["message"] == "invalid key [redacted]"
    assert record["error"].startswith("The provider refused the credentials")
    assert "attempts" not in record  # one record shape: what does not apply is left out
    assert await stage.status(bravo) == "active"
    assert SECRET.encode() not in stored_text(stage.settings.database_url)

    # the integration in error is no longer routed to
    stage.calls.clear()
    assert (await stage.send()).data["integration_id"] == bravo
    assert stage.called() == ["bravo"]


def tamper(database: Database, integration_id: str, how: str, donor: str | None = None) -> None:
    """Spoil one integration's sealed credentials in the database as an attacker or a bad
    restore would: ``swap`` puts ``donor``'s blob on it, ``flip`` flips one byte of its
    fields' ciphertext."""

    def apply(conn: sa.Connection) -> None:
        source = donor if how == "swap" else integration_id
        blob = conn.execute(
            sa.select(integrations.c.sealed_credentials).where(integrations.c.id == source)
        ).scalar_one()
        if how == "flip":
            parsed = read_blob(blob)
            flipped = bytes([parsed.ciphertext[0] ^ 0x01]) + parsed.ciphertext[1:]
            blob = msgspec.msgpack.encode(msgspec.structs.replace(parsed, ciphertext=flipped))
        conn.execute(
            integrations.update()
            .where(integrations.c.id == integration_id)
            .values(sealed_credentials=blob)
        )

    database.transaction_blocking(apply)


@pytest.mark.parametrize("how", ["swap", "flip"])
async def test_credentials_that_cannot_be_opened_move_the_integration_to_error_then_fall_back(
    stage: Stage, how: str
) -> None:
    """alpha's blob fails authentication (bravo's copied onto it, or one byte flipped) while
    the key provider works: alpha's fault. Nothing is sent with it, it moves to error with
    the reason and an audit event, and bravo serves: the answer is bravo's."""
    alpha, bravo = await stage.primary_with_fallback()
    tamper(stage.database, alpha, how, donor=bravo)
    response = await stage.send()

    assert response.status_code == 201 and response.data["integration_id"] == bravo
    assert stage.called() == ["bravo"]  # nothing sent on alpha
    attempts = await stage.attempts()
    assert summary(attempts) == [
        (alpha, "alpha", "failed", "auth_failed", None),
        (bravo, "bravo", "succeeded", "succeeded", 201),
    ]
    assert attempts[0]["message"] == (
        "The stored credentials cannot be opened: they failed authentication (altered, or "
        "copied from another integration); nothing was sent."
    )
    broken = await stage.integrations.get(stage.tenant_id, alpha)
    assert broken.status == "error"
    record = broken.metadata["verification"]
    assert record["outcome"] == "credentials_unreadable"
    assert record["error"] == CREDENTIALS_UNREADABLE_MESSAGE
    assert record["operation_id"] == response.data["id"]
    [event] = (
        await AuditService(stage.database).list(
            stage.tenant_id, action="integration.credentials_unreadable"
        )
    ).items
    assert (event.integration_id, event.status_before, event.status_after) == (
        alpha,
        "active",
        "error",
    )
    assert event.details["operation_id"] == response.data["id"]
    assert await stage.status(bravo) == "active"

    # no longer routed to: the next send goes straight to bravo
    stage.calls.clear()
    again = await stage.send()
    assert again.data["integration_id"] == bravo
    assert [a["integration_id"] for a in again.data["attempts"]] == [bravo]


async def test_unreadable_credentials_alone_are_provider_unavailable_not_key_provider(
    stage: Stage,
) -> None:
    """With no fallback, a blob that fails authentication answers as a refused integration
    does (502 ``provider_unavailable``), not as a key provider outage: it is no 503."""
    alpha = await stage.integration("alpha")
    bravo = await stage.integration("bravo")
    await stage.routing.create(
        stage.tenant_id, {"capability": SMS, "integration_id": alpha, "is_default": True}
    )
    tamper(stage.database, alpha, "swap", donor=bravo)
    response = await stage.send(key="k-unreadable")
    assert (response.status_code, response.code) == (502, "provider_unavailable")
    assert stage.calls == []
    assert await stage.status(alpha) == "error"


# -- not served ------------------------------------------------------------------------------


async def test_a_rejected_request_stops_without_trying_the_fallback(stage: Stage) -> None:
    alpha, _ = await stage.primary_with_fallback()
    stage.answers["alpha"] = failing(400, "not a mobile number")
    response = await stage.send()

    assert (response.status_code, response.code) == (422, "provider_rejected")
    assert response.success is False and "not a mobile number" in response.message
    assert response.data["status"] == "failed" and response.data["integration_id"] == alpha
    assert response.data["error"]["code"] == "provider_rejected"
    assert stage.called() == ["alpha"]
    assert summary(await stage.attempts()) == [(alpha, "alpha", "failed", "rejected", 400)]
    assert await stage.status(alpha) == "active"


async def test_an_unknown_outcome_stops_without_trying_the_fallback(stage: Stage) -> None:
    alpha, _ = await stage.primary_with_fallback()
    stage.answers["alpha"] = raising(httpx.ReadTimeout)  # sent; no answer: it may have acted
    response = await stage.send()

    assert (response.status_code, response.code) == (502, "provider_outcome_unknown")
    assert response.data["integration_id"] == alpha
    assert stage.called() == ["alpha"]
    assert summary(await stage.attempts()) == [(alpha, "alpha", "failed", "unknown", None)]


async def test_every_try_transient_is_provider_unavailable(stage: Stage) -> None:
    alpha, bravo = await stage.primary_with_fallback()
    stage.answers["alpha"] = failing(429, "slow down")
    stage.answers["bravo"] = raising(httpx.ConnectError)  # never reached
    response = await stage.send()

    assert (response.status_code, response.code) == (502, "provider_unavailable")
    assert response.data["integration_id"] is None
    assert "could not reach the provider" in response.message  # the last try's message
    assert summary(await stage.attempts()) == [
        (alpha, "alpha", "failed", "transient", 429),
        (bravo, "bravo", "failed", "transient", None),
    ]
    assert [await stage.status(alpha), await stage.status(bravo)] == ["active", "active"]


async def test_a_fallback_disabled_during_the_first_try_is_not_tried(stage: Stage) -> None:
    alpha, bravo = await stage.primary_with_fallback()

    async def disable_bravo_meanwhile(request: httpx.Request) -> httpx.Response:
        await stage.integrations.disable(stage.tenant_id, bravo)
        return httpx.Response(503, json={"message": "maintenance"})

    stage.answers["alpha"] = disable_bravo_meanwhile
    response = await stage.send()

    assert (response.status_code, response.code) == (502, "provider_unavailable")
    assert stage.called() == ["alpha"]
    assert summary(await stage.attempts()) == [(alpha, "alpha", "failed", "transient", 503)]


async def test_no_rule_is_no_active_provider(stage: Stage) -> None:
    await stage.integration("alpha")  # configured, but no rule routes to it
    response = await stage.send()

    assert (response.status_code, response.code) == (409, "no_active_provider")
    assert response.data["status"] == "failed" and response.data["attempts"] == []
    assert stage.calls == [] and await stage.attempts() == []


async def test_rules_naming_only_unusable_integrations_are_no_active_provider(
    stage: Stage,
) -> None:
    alpha, bravo = await stage.primary_with_fallback()
    await stage.integrations.disable(stage.tenant_id, alpha)
    await stage.integrations.update(stage.tenant_id, bravo, {"enabled_capabilities": []})
    response = await stage.send()

    assert (response.status_code, response.code) == (409, "no_active_provider")
    assert stage.calls == [] and await stage.attempts() == []


# -- idempotency -----------------------------------------------------------------------------


async def test_a_finished_key_replays_without_calling_a_provider(stage: Stage) -> None:
    alpha, _ = await stage.primary_with_fallback()
    first = await stage.send(key="order-42")
    assert first.status_code == 201
    assert stage.calls[0][1].headers["idempotency-key"] == "order-42"  # the client's key

    again = await stage.send(key="order-42")
    assert again == first
    assert stage.called() == ["alpha"]
    assert summary(await stage.attempts()) == [(alpha, "alpha", "succeeded", "succeeded", 201)]


async def test_a_replayed_failure_is_the_same_failure(stage: Stage) -> None:
    await stage.primary_with_fallback()
    stage.answers["alpha"] = failing(400, "not a mobile number")
    first = await stage.send(key="order-43")
    stage.answers.clear()  # the provider would accept it now: the key still answers as before
    again = await stage.send(key="order-43")
    assert again == first and again.code == "provider_rejected"
    assert stage.called() == ["alpha"]


async def test_a_key_reused_with_another_body_is_refused(stage: Stage) -> None:
    await stage.primary_with_fallback()
    await stage.send(key="order-44")
    with pytest.raises(ValidationError) as refused:
        await stage.send({**MESSAGE, "body": "Another text"}, key="order-44")
    assert list(refused.value.errors) == ["Idempotency-Key"]
    assert len(stage.calls) == 1 and len(await stage.attempts()) == 1


async def test_a_key_still_running_is_a_conflict(stage: Stage) -> None:
    await stage.primary_with_fallback()
    seen: list[BaseException] = []

    async def repeat_meanwhile(request: httpx.Request) -> httpx.Response:
        with pytest.raises(IdempotencyConflict) as conflict:
            await stage.send(key="order-45")
        seen.append(conflict.value)
        return httpx.Response(201, json={"sid": "m-1"})

    stage.answers["alpha"] = repeat_meanwhile
    first = await stage.send(key="order-45")

    assert len(seen) == 1 and first.status_code == 201
    assert stage.called() == ["alpha"]  # the repeat called no provider
    assert (await stage.send(key="order-45")) == first  # and, once finished, it replays
