"""Routing rules, operations through routing with fallback, idempotency, delivery attempts."""

from __future__ import annotations

from typing import Any

import anyio
import msgspec
import pytest
import sqlalchemy as sa

from relaykit.dispatch import IdempotencyConflict
from relaykit.storage.models import integrations

from .conftest import SENT, Api

pytestmark = pytest.mark.anyio

RULES = "/api/v1/routing-rules"
SMS = "/api/v1/operations/send_sms"
ATTEMPTS = "/api/v1/delivery-attempts"
MESSAGE = {"to": "+15550100001", "body": "Your code is 123456"}


@pytest.fixture(autouse=True)
def clear_sent() -> None:
    SENT.clear()


async def messaging(
    api: Api, headers: dict[str, str], provider: str, token: str, *, status: str = "active"
) -> str:
    response = await api.client.post(
        "/api/v1/integrations",
        json={
            "provider": provider,
            "credentials": {
                "account_sid": f"AC-{provider}",
                "auth_token": token,
                "from_number": "+15550100000",
            },
            "enabled_capabilities": ["send_sms", "send_whatsapp"],
        },
        headers=headers,
    )
    assert response.status_code == 201, response.text
    integration_id = str(response.json()["data"]["id"])

    def set_status(conn: sa.Connection) -> None:
        conn.execute(
            integrations.update().where(integrations.c.id == integration_id).values(status=status)
        )

    api.database.transaction_blocking(set_status)
    return integration_id


async def rule(api: Api, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await api.client.post(
        RULES, json={"capability": "send_sms", **body}, headers=headers
    )
    assert response.status_code == 201, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


async def status_of(api: Api, headers: dict[str, str], integration_id: str) -> str:
    return str(
        (await api.client.get(f"/api/v1/integrations/{integration_id}", headers=headers)).json()[
            "data"
        ]["status"]
    )


# -- rules -------------------------------------------------------------------------------------


async def test_rule_crud(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    plivo_like = await messaging(api, headers, "chatter", "tok-ok-1")
    twilio_like = await messaging(api, headers, "textly", "tok-ok-2")
    created = await rule(api, headers, integration_id=plivo_like, is_default=True, priority=100)
    assert set(created) == {
        "id",
        "capability",
        "integration_id",
        "fallback_integration_id",
        "is_default",
        "priority",
        "created_at",
        "updated_at",
    }
    assert created["fallback_integration_id"] is None and created["is_default"] is True
    url = f"{RULES}/{created['id']}"
    assert (await api.client.get(url, headers=headers)).json()["data"] == created
    # the contract's Scenario 3: point the rule at the other provider
    patched = await api.client.patch(
        url,
        json={"integration_id": twilio_like, "fallback_integration_id": plivo_like},
        headers=headers,
    )
    assert patched.status_code == 200
    assert patched.json()["message"] == "Routing rule updated successfully"
    assert patched.json()["data"]["integration_id"] == twilio_like
    assert patched.json()["data"]["id"] == created["id"]
    listed = (await api.client.get(RULES, headers=headers)).json()
    assert listed["meta"] == {"current_page": 1, "per_page": 25, "total": 1, "last_page": 1}
    assert listed["links"]["first"] == "/api/v1/routing-rules?page=1"
    deleted = await api.client.delete(url, headers=headers)
    assert deleted.json() == {"success": True, "message": "Routing rule deleted successfully"}
    assert (await api.client.get(url, headers=headers)).status_code == 404


async def test_a_new_default_replaces_the_old(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    a = await messaging(api, headers, "chatter", "tok-ok-1")
    b = await messaging(api, headers, "textly", "tok-ok-2")
    first = await rule(api, headers, integration_id=a, is_default=True)
    second = await rule(api, headers, integration_id=b, is_default=True)
    assert (await api.client.get(f"{RULES}/{first['id']}", headers=headers)).json()["data"][
        "is_default"
    ] is False
    assert (await api.client.get(f"{RULES}/{second['id']}", headers=headers)).json()["data"][
        "is_default"
    ] is True


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"integration_id": "{a}"}, {"capability": ["The capability field is required."]}),
        (
            {"capability": "send_fax", "integration_id": "{a}"},
            {"capability": ["The selected capability is invalid."]},
        ),
        (
            {"capability": [], "integration_id": "{a}"},
            {"capability": ["The capability field must be a string."]},
        ),
        (
            {"capability": {}, "integration_id": "{a}"},
            {"capability": ["The capability field must be a string."]},
        ),
        ({"capability": "send_sms"}, {"integration_id": ["The integration_id field is required."]}),
        (
            {"capability": "send_sms", "integration_id": "01hwxyz123abc456def789ghi0"},
            {"integration_id": ["The selected integration_id is invalid."]},
        ),
        (
            {"capability": "send_sms", "integration_id": "{a}", "fallback_integration_id": "{a}"},
            {"fallback_integration_id": ["The fallback must differ from the integration."]},
        ),
        (
            {"capability": "send_sms", "integration_id": "{pay}"},
            {"integration_id": ["The integration does not have send_sms enabled."]},
        ),
        (
            {"capability": "send_sms", "integration_id": "{a}", "priority": "high"},
            {"priority": ["The priority field must be an integer."]},
        ),
        (
            {"capability": "send_sms", "integration_id": "{a}", "priority": 10**9},
            {"priority": ["The priority must be between -1000000 and 1000000."]},
        ),
        (
            {"capability": "send_sms", "integration_id": "{a}", "is_default": "yes"},
            {"is_default": ["The is_default field must be true or false."]},
        ),
        (
            {"capability": "send_sms", "integration_id": "{a}", "weight": 1},
            {"weight": ["This field is not allowed."]},
        ),
    ],
)
async def test_rule_validation(
    api: Api, body: dict[str, Any], errors: dict[str, list[str]]
) -> None:
    _, headers = api.tenant_token("acme")
    a = await messaging(api, headers, "chatter", "tok-ok-1")
    pay = (
        await api.client.post(
            "/api/v1/integrations",
            json={
                "provider": "paymo",
                "credentials": {"publishable_key": "pk_1", "secret_key": "sk_1234"},
                "enabled_capabilities": ["initiate_payment"],
            },
            headers=headers,
        )
    ).json()["data"]["id"]
    filled = {k: (v.format(a=a, pay=pay) if isinstance(v, str) else v) for k, v in body.items()}
    response = await api.client.post(RULES, json=filled, headers=headers)
    assert response.status_code == 422
    assert response.json() == {
        "success": False,
        "message": "The given data was invalid.",
        "errors": errors,
    }


async def test_rules_and_attempts_of_another_tenant_are_not_found(api: Api) -> None:
    _, owner = api.tenant_token("acme")
    _, stranger = api.tenant_token("globex")
    a = await messaging(api, owner, "chatter", "tok-ok-1")
    made = await rule(api, owner, integration_id=a)
    sent = (await api.client.post(SMS, json=MESSAGE, headers=owner)).json()["data"]
    attempt_id = sent["attempts"][0]["id"]
    for method, url, body in [
        ("GET", f"{RULES}/{made['id']}", None),
        ("PATCH", f"{RULES}/{made['id']}", {"priority": 1}),
        ("DELETE", f"{RULES}/{made['id']}", None),
        ("GET", f"{ATTEMPTS}/{attempt_id}", None),
    ]:
        assert (
            await api.client.request(method, url, json=body, headers=stranger)
        ).status_code == 404
    # nor may a rule name another tenant's integration
    response = await api.client.post(
        RULES, json={"capability": "send_sms", "integration_id": a}, headers=stranger
    )
    assert response.json()["errors"] == {
        "integration_id": ["The selected integration_id is invalid."]
    }
    assert (await api.client.get(RULES, headers=stranger)).json()["meta"]["total"] == 0
    assert (await api.client.get(ATTEMPTS, headers=stranger)).json()["meta"]["total"] == 0
    # and the stranger's operation finds no route
    assert (await api.client.post(SMS, json=MESSAGE, headers=stranger)).json()[
        "code"
    ] == "no_active_provider"


# -- operations --------------------------------------------------------------------------------


async def test_the_primary_serves(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    primary = await messaging(api, headers, "chatter", "tok-ok-primary")
    fallback = await messaging(api, headers, "textly", "tok-ok-fallback")
    await rule(
        api, headers, integration_id=primary, fallback_integration_id=fallback, is_default=True
    )
    response = await api.client.post(SMS, json=MESSAGE, headers=headers)
    assert response.status_code == 201
    body = response.json()
    assert body["success"] is True and body["message"] == "Operation completed successfully"
    data = body["data"]
    assert data["status"] == "succeeded" and data["integration_id"] == primary
    assert data["capability"] == "send_sms"
    assert data["result"] == {
        "provider_message_id": f"msg-{data['id']}",
        "provider_status": "queued",
        "to": "+15550100001",
        "from": "+15550100000",
    }
    [attempt] = data["attempts"]
    assert (
        attempt["integration_id"] == primary
        and attempt["status"] == "succeeded"
        and attempt["provider"] == "chatter"
    )
    assert [s["token"] for s in SENT] == ["tok-ok-primary"]


async def test_a_transient_failure_moves_to_the_fallback(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    primary = await messaging(api, headers, "chatter", "tok-503-primary")
    fallback = await messaging(api, headers, "textly", "tok-ok-fallback")
    await rule(
        api, headers, integration_id=primary, fallback_integration_id=fallback, is_default=True
    )
    data = (await api.client.post(SMS, json=MESSAGE, headers=headers)).json()["data"]
    assert data["status"] == "succeeded" and data["integration_id"] == fallback
    assert [
        (a["integration_id"], a["outcome"], a["provider_status_code"]) for a in data["attempts"]
    ] == [(primary, "transient", 503), (fallback, "succeeded", None)]
    assert await status_of(api, headers, primary) == "active"  # a 503 says nothing of the keys
    # both tries carried the same idempotency key (the operation's id: none was given)
    assert {s["key"] for s in SENT} == {data["id"]}


async def test_an_auth_failure_puts_the_primary_in_error_and_the_fallback_serves(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    primary = await messaging(api, headers, "chatter", "tok-401-primary")
    fallback = await messaging(api, headers, "textly", "tok-ok-fallback")
    await rule(
        api, headers, integration_id=primary, fallback_integration_id=fallback, is_default=True
    )
    data = (await api.client.post(SMS, json=MESSAGE, headers=headers)).json()["data"]
    assert data["integration_id"] == fallback
    assert [a["outcome"] for a in data["attempts"]] == ["auth_failed", "succeeded"]
    detail = (await api.client.get(f"/api/v1/integrations/{primary}", headers=headers)).json()[
        "data"
    ]
    assert detail["status"] == "error"
    assert (
        detail["metadata"]["verification"]["error"]
        == "The provider refused the credentials during an operation: Authenticate"
    )
    # the next operation goes straight to the fallback
    SENT.clear()
    again = (await api.client.post(SMS, json=MESSAGE, headers=headers)).json()["data"]
    assert [a["integration_id"] for a in again["attempts"]] == [fallback]


async def test_a_rejected_request_stops_and_is_reported(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    primary = await messaging(api, headers, "chatter", "tok-400-primary")
    fallback = await messaging(api, headers, "textly", "tok-ok-fallback")
    await rule(
        api, headers, integration_id=primary, fallback_integration_id=fallback, is_default=True
    )
    response = await api.client.post(SMS, json=MESSAGE, headers=headers)
    assert response.status_code == 422
    body = response.json()
    assert body["success"] is False and body["code"] == "provider_rejected"
    assert body["message"] == "The provider rejected the request: The 'To' number is not valid"
    assert body["data"]["status"] == "failed"
    assert [(a["outcome"], a["provider_code"]) for a in body["data"]["attempts"]] == [
        ("rejected", "21211")
    ]
    assert [s["token"] for s in SENT] == ["tok-400-primary"]  # the fallback was not tried


async def test_a_lost_answer_is_not_retried_elsewhere(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    primary = await messaging(api, headers, "chatter", "tok-lost-primary")
    fallback = await messaging(api, headers, "textly", "tok-ok-fallback")
    await rule(
        api, headers, integration_id=primary, fallback_integration_id=fallback, is_default=True
    )
    response = await api.client.post(SMS, json=MESSAGE, headers=headers)
    assert response.status_code == 502
    assert response.json()["code"] == "provider_outcome_unknown"
    assert len(SENT) == 1


async def test_all_failing_is_provider_unavailable(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    primary = await messaging(api, headers, "chatter", "tok-503-a")
    fallback = await messaging(api, headers, "textly", "tok-503-b")
    await rule(
        api, headers, integration_id=primary, fallback_integration_id=fallback, is_default=True
    )
    response = await api.client.post(SMS, json=MESSAGE, headers=headers)
    assert response.status_code == 502
    assert response.json()["code"] == "provider_unavailable"
    assert len(response.json()["data"]["attempts"]) == 2


@pytest.mark.parametrize("unusable", ["inactive", "pending_verify", "error"])
async def test_no_selectable_integration_is_no_active_provider(api: Api, unusable: str) -> None:
    _, headers = api.tenant_token("acme")
    primary = await messaging(api, headers, "chatter", "tok-ok-1", status=unusable)
    fallback = await messaging(api, headers, "textly", "tok-ok-2", status=unusable)
    await rule(
        api, headers, integration_id=primary, fallback_integration_id=fallback, is_default=True
    )
    response = await api.client.post(SMS, json=MESSAGE, headers=headers)
    assert response.status_code == 409
    body = response.json()
    assert body["success"] is False and body["code"] == "no_active_provider"
    assert body["data"]["attempts"] == [] and SENT == []


async def test_no_rule_is_no_active_provider(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    await messaging(api, headers, "chatter", "tok-ok-1")
    response = await api.client.post(SMS, json=MESSAGE, headers=headers)
    assert response.status_code == 409 and response.json()["code"] == "no_active_provider"


async def test_rule_order_default_then_priority(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    low = await messaging(api, headers, "chatter", "tok-503-low")
    high = await messaging(api, headers, "textly", "tok-503-high")
    await rule(api, headers, integration_id=low, priority=1)
    await rule(api, headers, integration_id=high, priority=50)
    data = (await api.client.post(SMS, json=MESSAGE, headers=headers)).json()["data"]
    assert [a["integration_id"] for a in data["attempts"]] == [high, low]  # higher number first
    await rule(api, headers, integration_id=low, is_default=True, priority=0)
    SENT.clear()
    data = (await api.client.post(SMS, json=MESSAGE, headers=headers)).json()["data"]
    assert [a["integration_id"] for a in data["attempts"]] == [low, high]  # the default first


async def test_operation_input_is_validated(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    response = await api.client.post(
        SMS, json={"to": "5550100", "body": "x", "cc": "y"}, headers=headers
    )
    assert response.status_code == 422
    assert set(response.json()["errors"]) <= {"to", "cc"}
    missing = await api.client.post(SMS, json={"body": "x"}, headers=headers)
    assert missing.json()["errors"] == {"to": ["The to field is required."]}
    unknown = await api.client.post("/api/v1/operations/send_fax", json={}, headers=headers)
    assert (
        unknown.status_code == 404 and unknown.json()["message"] == "Unknown capability send_fax."
    )


# -- idempotency -------------------------------------------------------------------------------


async def test_an_idempotent_repeat_makes_no_second_call(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    primary = await messaging(api, headers, "chatter", "tok-ok-1")
    await rule(api, headers, integration_id=primary)
    keyed = {**headers, "Idempotency-Key": "order-1234"}
    first = await api.client.post(SMS, json=MESSAGE, headers=keyed)
    second = await api.client.post(SMS, json=MESSAGE, headers=keyed)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert len(SENT) == 1 and SENT[0]["key"] == "order-1234"
    different = await api.client.post(SMS, json={**MESSAGE, "body": "another"}, headers=keyed)
    assert different.status_code == 422
    assert different.json()["errors"] == {
        "Idempotency-Key": ["This key was already used with a different request."]
    }
    # keys are per tenant: another tenant's identical key is its own
    _, other = api.tenant_token("globex")
    other_primary = await messaging(api, other, "chatter", "tok-ok-9")
    await rule(api, other, integration_id=other_primary)
    assert (
        await api.client.post(SMS, json=MESSAGE, headers={**other, "Idempotency-Key": "order-1234"})
    ).status_code == 201
    assert len(SENT) == 2


async def test_a_key_whose_operation_reached_no_provider_may_retry(api: Api) -> None:
    """no_active_provider and provider_unavailable release the key: nothing was done, so the
    same key runs again (and reaches the provider once there is a route)."""
    _, headers = api.tenant_token("acme")
    primary = await messaging(api, headers, "chatter", "tok-ok-1")
    keyed = {**headers, "Idempotency-Key": "k-no-route"}
    first = await api.client.post(SMS, json=MESSAGE, headers=keyed)
    assert first.status_code == 409 and first.json()["code"] == "no_active_provider"
    await rule(api, headers, integration_id=primary)
    again = await api.client.post(SMS, json=MESSAGE, headers=keyed)
    assert again.status_code == 201 and again.json()["data"]["id"] != first.json()["data"]["id"]
    assert len(SENT) == 1
    replay = await api.client.post(SMS, json=MESSAGE, headers=keyed)
    assert replay.json() == again.json() and len(SENT) == 1  # succeeded: replayed, not sent


async def test_a_key_whose_every_try_was_transient_may_retry(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    down = await messaging(api, headers, "chatter", "tok-503-1")
    await rule(api, headers, integration_id=down)
    keyed = {**headers, "Idempotency-Key": "k-transient"}
    first = await api.client.post(SMS, json=MESSAGE, headers=keyed)
    assert first.status_code == 502 and first.json()["code"] == "provider_unavailable"
    again = await api.client.post(SMS, json=MESSAGE, headers=keyed)
    assert again.status_code == 502 and again.json()["data"]["id"] != first.json()["data"]["id"]
    assert len(SENT) == 2  # it reached the provider again


async def test_a_rejected_operation_is_replayed(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    refusing = await messaging(api, headers, "chatter", "tok-400-1")
    await rule(api, headers, integration_id=refusing)
    keyed = {**headers, "Idempotency-Key": "k-rejected"}
    first = await api.client.post(SMS, json=MESSAGE, headers=keyed)
    again = await api.client.post(SMS, json=MESSAGE, headers=keyed)
    assert first.status_code == again.status_code == 422
    assert first.json() == again.json() and len(SENT) == 1


async def test_the_same_key_while_running_is_409(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    primary = await messaging(api, headers, "chatter", "tok-ok-1")
    await rule(api, headers, integration_id=primary)
    gate = anyio.Event()
    from . import conftest

    original = conftest._send

    async def slow(payload: Any, credentials: Any, ctx: Any) -> Any:
        await gate.wait()
        return await original(payload, credentials, ctx)

    provider = api.services.catalog.get("chatter")
    assert provider is not None
    handlers = dict(provider.operations)
    msgspec.structs.force_setattr(provider, "operations", {**handlers, "send_sms": slow})
    dispatcher = api.services.dispatcher
    tenant_id = api.database.read_blocking(
        lambda conn: conn.execute(
            sa.text("SELECT id FROM tenants WHERE name = 'acme'")
        ).scalar_one()
    )
    try:
        results: dict[str, Any] = {}

        async def first() -> None:
            results["first"] = await dispatcher.dispatch(
                tenant_id, "send_sms", MESSAGE, "k-running"
            )

        # The dispatcher itself, not through the test client: the client serializes requests.
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(first)
                await anyio.sleep(0.2)
                with pytest.raises(IdempotencyConflict, match="still being processed"):
                    await dispatcher.dispatch(tenant_id, "send_sms", MESSAGE, "k-running")
                gate.set()
        assert results["first"].status_code == 201
        response = await api.client.post(
            SMS, json=MESSAGE, headers={**headers, "Idempotency-Key": "k-running"}
        )
        assert response.status_code == 201 and len(SENT) == 1
    finally:
        msgspec.structs.force_setattr(provider, "operations", handlers)


async def test_bad_idempotency_keys(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    response = await api.client.post(
        SMS, json=MESSAGE, headers={**headers, "Idempotency-Key": "x" * 300}
    )
    assert response.status_code == 422 and "Idempotency-Key" in response.json()["errors"]


# -- delivery attempts --------------------------------------------------------------------------


async def test_delivery_attempts_list_and_filters(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    primary = await messaging(api, headers, "chatter", "tok-503-primary")
    fallback = await messaging(api, headers, "textly", "tok-ok-fallback")
    await rule(api, headers, integration_id=primary, fallback_integration_id=fallback)
    operation = (await api.client.post(SMS, json=MESSAGE, headers=headers)).json()["data"]
    listed = (await api.client.get(ATTEMPTS, headers=headers)).json()
    assert listed["success"] is True
    assert listed["meta"]["total"] == 2
    assert listed["data"] == operation["attempts"]
    assert set(listed["data"][0]) == {
        "id",
        "operation_id",
        "integration_id",
        "provider",
        "capability",
        "status",
        "outcome",
        "provider_status_code",
        "provider_code",
        "message",
        "duration_ms",
        "started_at",
        "completed_at",
        "provider_object_id",
        "delivery_status",
        "delivery_updated_at",
    }

    async def ids(**params: Any) -> list[str]:
        return [
            a["integration_id"]
            for a in (await api.client.get(ATTEMPTS, params=params, headers=headers)).json()["data"]
        ]

    assert await ids(status="failed") == [primary]
    assert await ids(status="succeeded") == [fallback]
    assert await ids(integration_id=fallback) == [fallback]
    assert await ids(capability="send_whatsapp") == []
    one = await api.client.get(f"{ATTEMPTS}/{operation['attempts'][0]['id']}", headers=headers)
    assert one.json()["data"] == operation["attempts"][0]
    for bad in (
        {"status": "ok"},
        {"capability": "fax"},
        {"integration_id": "nope"},
        {"per_page": 500},
    ):
        assert (await api.client.get(ATTEMPTS, params=bad, headers=headers)).status_code == 422
