"""The ledger over HTTP: GET /api/v1/operations (newest first, filters), GET
/api/v1/operations/{id}, attempts by operation, and a database failure mid-operation."""

from __future__ import annotations

import pytest

from .conftest import SENT, Api
from .test_routing_api import ATTEMPTS, MESSAGE, SMS, messaging, rule

pytestmark = pytest.mark.anyio

OPERATIONS = "/api/v1/operations"


@pytest.fixture(autouse=True)
def clear_sent() -> None:
    SENT.clear()


async def test_operations_are_listed_newest_first_and_shown_with_their_attempts(api: Api) -> None:
    tenant_id, headers = api.tenant_token("acme")
    down = await messaging(api, headers, "chatter", "tok-503-1")
    up = await messaging(api, headers, "textly", "tok-ok-1")
    await rule(api, headers, integration_id=down, fallback_integration_id=up, is_default=True)
    first = (await api.client.post(SMS, json=MESSAGE, headers=headers)).json()["data"]
    keyed = {**headers, "Idempotency-Key": "k-ledger"}
    second = (await api.client.post(SMS, json=MESSAGE, headers=keyed)).json()["data"]

    listed = await api.client.get(OPERATIONS, headers=headers)
    assert listed.status_code == 200
    body = listed.json()
    assert [op["id"] for op in body["data"]] == [second["id"], first["id"]]
    assert body["meta"] == {"current_page": 1, "per_page": 25, "total": 2, "last_page": 1}
    filtered = await api.client.get(
        OPERATIONS, params={"idempotency_key": "k-ledger"}, headers=headers
    )
    assert [op["id"] for op in filtered.json()["data"]] == [second["id"]]

    shown = (await api.client.get(f"{OPERATIONS}/{first['id']}", headers=headers)).json()["data"]
    assert shown["status"] == "succeeded" and shown["integration_id"] == up
    assert [(a["integration_id"], a["status"]) for a in shown["attempts"]] == [
        (down, "failed"),
        (up, "succeeded"),
    ]
    by_operation = await api.client.get(
        ATTEMPTS, params={"operation_id": first["id"]}, headers=headers
    )
    assert [a["id"] for a in by_operation.json()["data"]] == [a["id"] for a in shown["attempts"]]

    _, other = api.tenant_token("other")
    hidden = await api.client.get(f"{OPERATIONS}/{first['id']}", headers=other)
    assert hidden.status_code == 404 and hidden.json()["code"] == "not_found"
    assert (await api.client.get(OPERATIONS, headers=other)).json()["data"] == []
    assert tenant_id


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"status": "done"}, "status"),
        ({"capability": "send_fax"}, "capability"),
        ({"integration_id": "x"}, "integration_id"),
        ({"page": 0}, "page"),
        ({"idempotency_key": "a\x00b"}, "idempotency_key"),  # PostgreSQL refuses NUL bytes
        ({"idempotency_key": "k" * 256}, "idempotency_key"),
    ],
)
async def test_bad_ledger_filters_are_422(api: Api, params: dict[str, object], key: str) -> None:
    _, headers = api.tenant_token("acme")
    response = await api.client.get(OPERATIONS, params=params, headers=headers)
    assert response.status_code == 422 and list(response.json()["errors"]) == [key]


async def test_a_database_failure_mid_operation_is_an_enveloped_503_naming_it(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    primary = await messaging(api, headers, "chatter", "tok-ok-1")
    await rule(api, headers, integration_id=primary)
    if api.database.dialect == "sqlite":
        statements = [
            "CREATE TRIGGER inject BEFORE UPDATE ON operations"
            " BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        ]
    else:
        statements = [
            "CREATE FUNCTION inject() RETURNS trigger AS $$"
            " BEGIN RAISE EXCEPTION 'injected failure'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER inject BEFORE UPDATE ON operations FOR EACH ROW"
            " EXECUTE FUNCTION inject()",
        ]
    api.database.transaction_blocking(
        lambda conn: [conn.exec_driver_sql(statement) for statement in statements]
    )
    response = await api.client.post(SMS, json=MESSAGE, headers=headers)
    assert response.status_code == 503
    body = response.json()
    assert body["success"] is False and body["code"] == "ledger_unavailable"
    operation_id = body["data"]["id"]
    assert operation_id in body["message"] and "injected" not in response.text
    assert len(SENT) == 1
    shown = (await api.client.get(f"{OPERATIONS}/{operation_id}", headers=headers)).json()
    assert shown["data"]["status"] == "in_progress"
    assert [a["status"] for a in shown["data"]["attempts"]] == ["in_flight"]
