"""The webhook intake in core: its storage functions, every rejection by its reason, dedupe
under concurrency, a database failure, and what dispatch records for webhooks to find (the
provider's object id, the callback URL). Real database, sealing and plugin manager."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import msgspec
import pytest
import sqlalchemy as sa

from relaykit import MessageResult, OperationResult, tenants
from relaykit.dispatch import Dispatcher, provider_object_id
from relaykit.ids import new_id, utcnow
from relaykit.integrations import IntegrationService
from relaykit.keys import KeySet, local_key_set
from relaykit.metrics import WEBHOOK_EVENTS
from relaykit.plugins import make_plugin_manager
from relaykit.providers import CredentialField
from relaykit.routing import RoutingService
from relaykit.sealing import KeyUnavailable
from relaykit.settings import Settings
from relaykit.storage import delivery_attempts as attempt_rows
from relaykit.storage import integrations as integration_rows
from relaykit.storage import operations as operation_rows
from relaykit.storage import webhook_events as event_rows
from relaykit.storage.database import Database, OperationalError
from relaykit.storage.models import delivery_attempts, integrations
from relaykit.webhook_intake import WebhookIntake, WebhookRejectedError, WebhookUnavailable
from relaykit.webhooks import (
    STATUS_RANK,
    WebhookContext,
    WebhookEvent,
    WebhookRejected,
    WebhookRequest,
    WebhookScheme,
    hmac_hex,
    moves_forward,
    signatures_match,
)

from .providers_for_tests import OneProvider, make_provider, mark_active

pytestmark = pytest.mark.anyio

SECRET = "key-canary-intake-41d9"
PUBLIC_URL = "https://relay.example.com"
#: every webhook URL a send was given, in order
CALLBACKS: list[str | None] = []


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def send(payload: Any, credentials: Any, ctx: Any) -> OperationResult:
    CALLBACKS.append(ctx.webhook_url)
    return OperationResult.succeeded(
        MessageResult(
            provider_message_id=f"m-{ctx.operation_id}",
            provider_status="queued",
            to=payload.to,
            from_="+15550100000",
        )
    )


def receive(
    request: WebhookRequest, credentials: Mapping[str, Any], ctx: WebhookContext
) -> list[WebhookEvent]:
    """``X-Sig: hex(HMAC-SHA256(api_key, body))``; the body: {"events": [...]} or a string
    telling the scheme to misbehave."""
    signature = request.header("x-sig")
    if not signature or not signatures_match(
        hmac_hex(credentials["api_key"], request.body), [signature]
    ):
        raise WebhookRejected("signature mismatch")
    body = request.json()
    if body == "boom":
        raise KeyError(credentials["api_key"])  # a plugin bug whose message holds the secret
    if body == "not-a-list":
        return "nope"  # type: ignore[return-value]
    return [msgspec.convert(item, WebhookEvent) for item in body["events"]]


SCHEME = WebhookScheme(receive=receive, secret_fields=("api_key",))
HOOKY = make_provider("hooky", operations={"send_sms": send}, webhooks=SCHEME)
QUIET = make_provider("quiet", operations={"send_sms": send})
OPTIONAL = make_provider(
    "optional",
    credential_schema={
        "api_key": CredentialField(sensitive=True, required=False),
        "account": CredentialField(),
    },
    webhooks=SCHEME,
)


def signed(body: Any) -> tuple[bytes, dict[str, str]]:
    raw = msgspec.json.encode(body)
    return raw, {"x-sig": hmac_hex(SECRET, raw), "content-type": "application/json"}


class Stage:
    def __init__(self, settings: Settings, database: Database) -> None:
        catalog = make_plugin_manager(
            load_entrypoints=False, plugins=[("hooks", OneProvider(HOOKY, QUIET, OPTIONAL))]
        ).catalog()
        self.database = database
        keyring = local_key_set(settings, database)
        self.integrations = IntegrationService(database, catalog, keyring)
        self.routing = RoutingService(database, catalog)
        self.dispatcher = Dispatcher(settings, database, catalog, keyring, self.routing)
        self.intake = WebhookIntake(settings, database, catalog, keyring)
        self.tenant_id = database.transaction_blocking(tenants.create_tenant, "acme").id

    async def integration(self, provider: str = "hooky", **credentials: Any) -> str:
        created = await self.integrations.create(
            self.tenant_id,
            {
                "provider": provider,
                "credentials": {"api_key": SECRET, "account": "a", **credentials},
                "enabled_capabilities": ["send_sms"] if provider != "optional" else [],
            },
        )
        await mark_active(self.database, created.id)
        return created.id

    async def sent(self, integration_id: str) -> str:
        """Send one SMS through ``integration_id``: the message id it got."""
        await self.routing.create(
            self.tenant_id,
            {"capability": "send_sms", "integration_id": integration_id, "is_default": True},
        )
        response = await self.dispatcher.dispatch(
            self.tenant_id, "send_sms", {"to": "+15550100001", "body": "hi"}, None
        )
        assert response.status_code == 201
        message_id: str = response.data["attempts"][0]["provider_object_id"]
        return message_id

    async def receive(self, integration_id: str, body: Any, **headers: str) -> Any:
        raw, signature = signed(body)
        return await self.intake.receive(
            integration_id,
            method="POST",
            url=f"{PUBLIC_URL}/webhooks/{integration_id}",
            headers={**signature, **headers},
            body=raw,
        )

    def delivery_status(self, message_id: str) -> Any:
        return self.database.read_blocking(
            lambda conn: conn.execute(
                sa.select(delivery_attempts.c.delivery_status).where(
                    delivery_attempts.c.provider_object_id == message_id
                )
            ).scalar_one()
        )


@pytest.fixture
async def stage(settings: Settings, database: Database) -> AsyncIterator[Stage]:
    CALLBACKS.clear()
    stage = Stage(msgspec.structs.replace(settings, public_url=PUBLIC_URL + "/"), database)
    yield stage
    await stage.dispatcher.aclose()


def one(event_id: str, status: str | None, obj: str | None, **extra: Any) -> dict[str, Any]:
    return {
        "events": [
            {"dedupe_key": event_id, "type": "t", "status": status, "object_id": obj, **extra}
        ]
    }


# -- dispatch records what webhooks find ------------------------------------------------------


async def test_a_send_records_the_object_id_and_is_given_the_callback_url(stage: Stage) -> None:
    integration_id = await stage.integration()
    message_id = await stage.sent(integration_id)
    assert message_id.startswith("m-")
    assert [f"{PUBLIC_URL}/webhooks/{integration_id}"] == CALLBACKS


def test_the_object_id_is_the_first_provider_id_of_the_result() -> None:
    class Refund(msgspec.Struct):
        provider_payment_id: str | None
        provider_refund_id: str

    assert provider_object_id(Refund(None, "re_1")) == "re_1"
    assert provider_object_id(Refund("pi_1", "re_1")) == "pi_1"
    assert provider_object_id(None) is None


# -- storage ----------------------------------------------------------------------------------


async def test_the_forward_only_update_moves_exactly_where_moves_forward_says(
    stage: Stage,
) -> None:
    integration_id = await stage.integration()
    message_id = await stage.sent(integration_id)
    now = utcnow()
    wrong: list[tuple[str | None, str, bool]] = []
    for current in [None, *STATUS_RANK]:
        for new in [*STATUS_RANK, "bogus"]:

            def move(conn: sa.Connection, current: str | None = current, new: str = new) -> int:
                conn.execute(delivery_attempts.update().values(delivery_status=current))
                return attempt_rows.move_delivery_status(conn, integration_id, message_id, new, now)

            moved = bool(await stage.database.transaction(move))
            if moved != moves_forward(current, new):
                wrong.append((current, new, moved))
    assert wrong == []
    # Another integration's object of the same id is not touched.
    other = await stage.integration("quiet")
    moved = await stage.database.transaction(
        attempt_rows.move_delivery_status, other, message_id, "read", now
    )
    assert moved == 0


async def test_a_dedupe_key_is_stored_once_per_integration(stage: Stage) -> None:
    first, second = await stage.integration(), await stage.integration("quiet")

    def values(integration_id: str) -> dict[str, Any]:
        return {
            "id": new_id(),
            "tenant_id": stage.tenant_id,
            "integration_id": integration_id,
            "provider": "hooky",
            "dedupe_key": "evt_1",
            "type": "t",
            "received_at": utcnow(),
            "applied": False,
            "attempt_count": 0,
        }

    insert = event_rows.insert_if_new
    assert await stage.database.transaction(insert, values(first)) is True
    assert await stage.database.transaction(insert, values(first)) is False
    assert await stage.database.transaction(insert, values(second)) is True


async def test_events_past_retention_are_swept(stage: Stage) -> None:
    from relaykit.ledger import settle_abandoned

    integration_id = await stage.integration()
    message_id = await stage.sent(integration_id)
    await stage.receive(integration_id, one("ev-old", "delivered", message_id))

    def sweep(days_later: float) -> dict[str, int]:
        return stage.database.transaction_blocking(
            settle_abandoned,
            now=utcnow() + dt.timedelta(days=days_later),
            deadline_seconds=60,
            retention_days=90,
        )

    assert sweep(1)["webhook_events"] == 0
    assert sweep(91)["webhook_events"] == 1
    assert (await stage.intake.list(stage.tenant_id)).items == []


async def test_the_webhook_target_is_a_live_integration(stage: Stage) -> None:
    integration_id = await stage.integration()
    found = await integration_rows.webhook_target(stage.database, integration_id)
    assert found is not None
    tenant_id, provider, public, sealed = found
    assert (tenant_id, provider, public) == (stage.tenant_id, "hooky", {"account": "a"})
    assert sealed and SECRET.encode() not in sealed
    other_tenant = await integration_rows.webhook_target(stage.database, integration_id, new_id())
    assert other_tenant is None
    assert await integration_rows.webhook_target(stage.database, "'; DROP TABLE x") is None
    await stage.integrations.delete(stage.tenant_id, integration_id)
    assert await integration_rows.webhook_target(stage.database, integration_id) is None


# -- the intake -------------------------------------------------------------------------------


async def test_an_event_is_stored_applied_and_a_repeat_is_a_duplicate(stage: Stage) -> None:
    integration_id = await stage.integration()
    message_id = await stage.sent(integration_id)
    naive = dt.datetime(2026, 1, 10, 8, 45)  # a provider's time without a zone is UTC
    body = one("ev-1", "delivered", message_id, occurred_at=naive.isoformat(), provider_code="0")

    received = await stage.receive(integration_id, body)
    assert (received.events, received.applied, received.duplicates) == (1, 1, 0)
    assert stage.delivery_status(message_id) == "delivered"
    again = await stage.receive(integration_id, body)
    assert (again.events, again.applied, again.duplicates) == (1, 0, 1)
    [event] = (await stage.intake.list(stage.tenant_id)).items
    assert event["occurred_at"] == "2026-01-10T08:45:00Z"
    assert (event["applied"], event["attempt_count"], event["provider_code"]) == (True, 1, "0")
    assert await stage.intake.get(stage.tenant_id, event["id"]) == event


async def test_several_events_in_one_body_each_count(stage: Stage) -> None:
    integration_id = await stage.integration()
    message_id = await stage.sent(integration_id)
    body = {
        "events": [
            {"dedupe_key": "a", "type": "t", "status": "sent", "object_id": message_id},
            {"dedupe_key": "b", "type": "t", "status": "delivered", "object_id": message_id},
            {"dedupe_key": "a", "type": "t", "status": "sent", "object_id": message_id},
        ]
    }
    received = await stage.receive(integration_id, body)
    assert (received.events, received.applied, received.duplicates) == (3, 2, 1)
    assert stage.delivery_status(message_id) == "delivered"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("unknown", "unknown_integration"),
        ("not_an_id", "unknown_integration"),
        ("no_scheme", "no_scheme"),
        ("no_secret", "secret_not_configured"),
        ("bad_signature", "signature"),
        ("plugin_bug", "plugin_error"),
        ("not_a_list", "invalid_event"),
        ("control_characters", "invalid_event"),
        ("too_long", "invalid_event"),
    ],
)
async def test_each_rejection_is_counted_by_its_reason_and_says_nothing_else(
    stage: Stage, case: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    integration_id = await stage.integration()
    body: Any = one("ev-1", "delivered", "m-1")
    headers: dict[str, str] = {}
    if case == "unknown":
        integration_id = new_id()
    elif case == "not_an_id":
        integration_id = "x" * 40
    elif case == "no_scheme":
        integration_id = await stage.integration("quiet")
    elif case == "no_secret":
        integration_id = await stage.integration("optional", api_key=None)
    elif case == "bad_signature":
        headers = {"x-sig": "0" * 64}
    elif case == "plugin_bug":
        body = "boom"
    elif case == "not_a_list":
        body = "not-a-list"
    elif case == "control_characters":
        body = one("ev\x00", "delivered", "m-1")
    elif case == "too_long":
        body = one("ev", "delivered", "m" * 256)

    with pytest.raises(WebhookRejectedError) as raised:
        await stage.receive(integration_id, body, **headers)
    assert str(raised.value) == "The webhook was rejected."
    assert dict(stage.intake.rejected) == {reason: 1}
    assert f"rejected: {reason}" in caplog.text
    assert SECRET not in caplog.text
    assert (await stage.intake.list(stage.tenant_id)).total == 0


async def test_fifty_concurrent_deliveries_of_one_event_store_and_apply_it_once(
    stage: Stage,
) -> None:
    integration_id = await stage.integration()
    message_id = await stage.sent(integration_id)
    receipts: list[Any] = []

    async def deliver() -> None:
        receipts.append(await stage.receive(integration_id, one("ev-1", "delivered", message_id)))

    async with anyio.create_task_group() as group:
        for _ in range(50):
            group.start_soon(deliver)
    assert len(receipts) == 50
    assert sum(r.applied for r in receipts) == 1
    assert sum(r.duplicates for r in receipts) == 49
    [event] = (await stage.intake.list(stage.tenant_id)).items
    assert event["attempt_count"] == 1


async def test_a_database_failure_is_webhook_unavailable_and_stores_nothing(
    stage: Stage, monkeypatch: pytest.MonkeyPatch
) -> None:
    integration_id = await stage.integration()
    message_id = await stage.sent(integration_id)

    def fail(conn: sa.Connection, event_id: str, count: int) -> None:
        raise OperationalError("UPDATE webhook_events", {}, Exception("database is locked"))

    monkeypatch.setattr(event_rows, "mark_applied", fail)
    with pytest.raises(WebhookUnavailable):
        await stage.receive(integration_id, one("ev-1", "delivered", message_id))
    assert stage.delivery_status(message_id) == "accepted"  # the move rolled back too
    assert (await stage.intake.list(stage.tenant_id)).total == 0


async def test_an_event_that_arrives_before_its_send_ended_is_applied_when_it_ends(
    stage: Stage,
) -> None:
    integration_id = await stage.integration()
    await stage.receive(integration_id, one("ev-early", "delivered", "m-later"))

    def sent_as(conn: sa.Connection) -> None:
        """An attempt of this integration whose send ends now, having made ``m-later``."""
        operation_id, now = new_id(), utcnow()
        operation_rows.insert(
            conn,
            {
                "id": operation_id,
                "tenant_id": stage.tenant_id,
                "capability": "send_sms",
                "status": "in_progress",
                "request_hash": "h",
                "created_at": now,
            },
        )
        attempt = {
            "id": new_id(),
            "tenant_id": stage.tenant_id,
            "operation_id": operation_id,
            "integration_id": integration_id,
            "provider": "hooky",
            "capability": "send_sms",
            "status": "in_flight",
            "message": "",
            "started_at": now,
        }
        attempt_rows.insert(conn, attempt)
        ended = {"status": "succeeded", "provider_object_id": "m-later"}
        stage.dispatcher._finish_attempt(conn, None, attempt, ended, None)  # type: ignore[arg-type]

    await stage.database.transaction(sent_as)
    assert stage.delivery_status("m-later") == "delivered"
    [event] = (await stage.intake.list(stage.tenant_id, applied="true")).items
    assert event["dedupe_key"] == "ev-early"


async def test_describe_says_where_and_whether_an_integration_receives(stage: Stage) -> None:
    hooky = await stage.integration()
    quiet = await stage.integration("quiet")
    optional = await stage.integration("optional", api_key=None)
    described = await stage.intake.describe(stage.tenant_id, hooky)
    assert described.url == f"{PUBLIC_URL}/webhooks/{hooky}"
    assert (described.receives_webhooks, described.secret_configured) == (True, True)
    assert (await stage.intake.describe(stage.tenant_id, quiet)).receives_webhooks is False
    assert (await stage.intake.describe(stage.tenant_id, optional)).secret_configured is False


# -- stored credentials that cannot be opened ------------------------------------------------


class DownKeyProvider:
    """A key provider whose service is down; its error text must never be shown."""

    name = "local"
    default_key_id = "k1"
    in_process = True

    def wrap(self, key_id: str, data_key: bytes, associated_data: bytes) -> bytes:
        raise ConnectionError("kms unreachable, key material kek-77e1")

    def unwrap(self, key_id: str, wrapped: bytes, associated_data: bytes) -> bytes:
        raise ConnectionError("kms unreachable, key material kek-77e1")


def webhook_count(provider: str, result: str) -> float:
    return float(WEBHOOK_EVENTS.labels(provider, result)._value.get())


async def test_a_blob_that_fails_authentication_rejects_the_webhook(stage: Stage) -> None:
    """That integration's fault, and it never opens until replaced: a rejection (400) like
    any other, not a 503 the provider would retry forever."""
    integration_id = await stage.integration()
    donor = await stage.integration("quiet")
    await stage.database.transaction(
        lambda conn: conn.execute(
            sa.update(integrations)
            .where(integrations.c.id == integration_id)
            .values(
                sealed_credentials=sa.select(integrations.c.sealed_credentials)
                .where(integrations.c.id == donor)
                .scalar_subquery()
            )
        )
    )
    with pytest.raises(WebhookRejectedError):
        await stage.receive(integration_id, one("ev-1", "delivered", "m-1"))
    assert dict(stage.intake.rejected) == {"credentials_unusable": 1}
    assert (await stage.intake.list(stage.tenant_id)).total == 0
    described = await stage.intake.describe(stage.tenant_id, integration_id)
    assert described.secret_configured is False


async def test_a_key_provider_outage_is_webhook_unavailable_so_the_provider_retries(
    stage: Stage, caplog: pytest.LogCaptureFixture
) -> None:
    """The operator's fault: 503 (the provider delivers again), nothing stored, no
    rejection counted; the log names the failure without the provider's text. Once the key
    provider is back the same delivery is accepted."""
    caplog.set_level("DEBUG")
    integration_id = await stage.integration()
    working = stage.intake.key_provider
    stage.intake.key_provider = KeySet.single(DownKeyProvider())
    before = webhook_count("hooky", "unavailable")
    with pytest.raises(WebhookUnavailable):
        await stage.receive(integration_id, one("ev-1", "delivered", "m-1"))
    assert webhook_count("hooky", "unavailable") - before == 1
    assert dict(stage.intake.rejected) == {}
    assert (await stage.intake.list(stage.tenant_id)).total == 0
    with pytest.raises(KeyUnavailable):  # the API answers 503 key_provider_unavailable
        await stage.intake.describe(stage.tenant_id, integration_id)
    assert "KeyUnavailable: key provider local failed to unwrap: ConnectionError" in caplog.text
    assert "kek-77e1" not in caplog.text and SECRET not in caplog.text
    stage.intake.key_provider = working
    received = await stage.receive(integration_id, one("ev-1", "delivered", "m-1"))
    assert received.events == 1
