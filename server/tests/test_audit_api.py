"""The audit trail over HTTP: GET /api/v1/audit-events (filters, paging, newest first,
422s in the contract's envelope, another tenant's token sees nothing) and GET
/api/v1/integrations/{id}/events (404 for an unknown or another tenant's integration, a
deleted one's events still readable). The changes are made through the API, so the
events carry the request's token id and request id."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from relaykit.wire import AuditEventPage

from .conftest import SENT, Api
from .test_routing_api import MESSAGE, SMS, messaging, rule

pytestmark = pytest.mark.anyio

EVENTS = "/api/v1/audit-events"
CANARY = "tok-401-canary-secret-77aa"


def token_id(headers: dict[str, str]) -> str:
    """The id part of ``Authorization: Bearer rk_<id>_<secret>``."""
    return headers["Authorization"].split("_")[1]


async def events(api: Api, headers: dict[str, str], path: str = EVENTS, **query: Any) -> Any:
    response = await api.client.get(path, params=query, headers=headers)
    assert response.status_code == 200, response.text
    msgspec.json.decode(response.content, type=AuditEventPage)  # the declared type, strictly
    return response.json()


async def test_changes_are_listed_newest_first_with_their_token_and_request(api: Api) -> None:
    _tenant, headers = api.tenant_token("acme")
    twilio = await messaging(api, headers, "textly", "tok-ok-1")
    made = await rule(api, headers, integration_id=twilio)
    response = await api.client.post(
        f"/api/v1/integrations/{twilio}/disable", headers={**headers, "X-Request-ID": "req-777"}
    )
    assert response.status_code == 200
    body = await events(api, headers)
    assert [e["action"] for e in body["data"]] == [
        "integration.disabled",
        "routing_rule.created",
        "integration.created",
        "token.created",  # by the command line, as the test's helper made the token
    ]
    assert [e["seq"] for e in body["data"]] == [4, 3, 2, 1]
    assert [e["actor"] for e in body["data"]] == [token_id(headers)] * 3 + ["cli"]
    assert body["data"][3]["resource_id"] == token_id(headers)
    disabled = body["data"][0]
    assert (disabled["status_before"], disabled["status_after"]) == ("active", "inactive")
    assert disabled["request_id"] == "req-777"
    assert body["data"][1]["resource_id"] == made["id"]
    assert body["data"][1]["integration_id"] == twilio
    assert body["meta"] == {"current_page": 1, "per_page": 25, "total": 4, "last_page": 1}
    assert body["links"] == {
        "first": f"{EVENTS}?page=1",
        "last": f"{EVENTS}?page=1",
        "prev": None,
        "next": None,
    }
    assert set(disabled) == {
        "id",
        "action",
        "actor",
        "request_id",
        "resource_type",
        "resource_id",
        "integration_id",
        "status_before",
        "status_after",
        "details",
        "created_at",
        "seq",
        "prev_digest",
        "digest",
    }
    assert disabled["created_at"].endswith("Z")
    assert body["data"][1]["digest"] == disabled["prev_digest"]


async def test_paging_and_filters_keep_each_other(api: Api) -> None:
    _tenant, headers = api.tenant_token("acme")
    first = await messaging(api, headers, "textly", "tok-ok-1")
    second = await messaging(api, headers, "chatter", "tok-ok-2")
    for priority in (1, 2, 3):
        await rule(api, headers, integration_id=first, priority=priority)
    page = await events(api, headers, per_page=2, page=2, action="routing_rule.created")
    assert [e["details"]["priority"] for e in page["data"]] == [1]
    assert page["meta"] == {"current_page": 2, "per_page": 2, "total": 3, "last_page": 2}
    assert page["links"]["prev"] == f"{EVENTS}?action=routing_rule.created&per_page=2&page=1"
    assert page["links"]["next"] is None
    only_second = await events(api, headers, integration_id=second)
    assert [e["action"] for e in only_second["data"]] == ["integration.created"]
    assert (await events(api, headers, actor="worker"))["meta"]["total"] == 0
    mine = await events(api, headers, actor=token_id(headers))
    assert mine["meta"]["total"] == 5
    assert (await events(api, headers, since="2999-01-01T00:00:00Z"))["data"] == []
    assert (await events(api, headers, until="2000-01-01T00:00:00Z"))["data"] == []
    window = await events(api, headers, since="2000-01-01T00:00:00Z", until="2999-01-01T00:00:00Z")
    assert window["meta"]["total"] == 6  # and the token's creation
    assert (await events(api, headers, page=9))["data"] == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-02-30T00:00:00Z"}, "until"),
        ({"until": "9999-12-31T23:59:59-01:00"}, "until"),  # past year 9999 in UTC
        ({"since": "0001-01-01T00:00:00+01:00"}, "since"),  # before year 1 in UTC
        ({"action": "integration.exploded"}, "action"),
        ({"integration_id": "../etc"}, "integration_id"),
        ({"per_page": "101"}, "per_page"),
        ({"page": "0"}, "page"),
        ({"page": "x"}, "page"),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
    ],
)
async def test_bad_filters_are_422_in_the_contracts_envelope(
    api: Api, query: dict[str, str], field: str
) -> None:
    _tenant, headers = api.tenant_token("acme")
    response = await api.client.get(EVENTS, params=query, headers=headers)
    assert response.status_code == 422
    body = response.json()
    assert body["success"] is False
    assert body["message"] == "The given data was invalid."
    assert list(body["errors"]) == [field]


async def test_another_tenants_token_sees_none_of_it(api: Api) -> None:
    _acme, acme = api.tenant_token("acme")
    _globex, globex = api.tenant_token("globex")
    made = await messaging(api, acme, "textly", "tok-ok-1")
    assert (await events(api, acme))["meta"]["total"] == 2  # the token's and the create
    theirs = await events(api, globex)
    assert [e["action"] for e in theirs["data"]] == ["token.created"]  # its own token only
    assert (await events(api, globex, integration_id=made))["data"] == []
    response = await api.client.get(f"/api/v1/integrations/{made}/events", headers=globex)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


async def test_an_integrations_events_and_a_deleted_ones(api: Api) -> None:
    _tenant, headers = api.tenant_token("acme")
    kept = await messaging(api, headers, "textly", "tok-ok-1")
    gone = await messaging(api, headers, "chatter", "tok-ok-2")
    await api.client.patch(
        f"/api/v1/integrations/{kept}", json={"metadata": {"team": "ops"}}, headers=headers
    )
    assert (await api.client.delete(f"/api/v1/integrations/{gone}", headers=headers)).is_success
    path = f"/api/v1/integrations/{kept}/events"
    body = await events(api, headers, path)
    assert [e["action"] for e in body["data"]] == ["integration.updated", "integration.created"]
    assert body["data"][0]["details"] == {"fields": ["metadata"], "metadata_keys": ["team"]}
    assert body["links"]["first"] == f"{path}?page=1"
    deleted = await events(api, headers, f"/api/v1/integrations/{gone}/events")
    assert [e["action"] for e in deleted["data"]] == ["integration.deleted", "integration.created"]
    assert deleted["data"][0]["status_before"] == "active"
    paged = await events(api, headers, path, per_page=1, page=2)
    assert [e["action"] for e in paged["data"]] == ["integration.created"]
    assert paged["links"]["prev"] == f"{path}?per_page=1&page=1"
    for unknown in ("01aaaaaaaaaaaaaaaaaaaaaaaa", "not-an-id"):
        response = await api.client.get(f"/api/v1/integrations/{unknown}/events", headers=headers)
        assert response.status_code == 404
    bad = await api.client.get(path, params={"per_page": "0"}, headers=headers)
    assert bad.status_code == 422 and list(bad.json()["errors"]) == ["per_page"]
    assert (await api.client.get(path)).status_code == 401
    assert (await api.client.get(EVENTS)).status_code == 401


async def test_a_refusal_during_a_send_is_an_event_of_the_sending_token(api: Api) -> None:
    """Moved to error by a live operation: the provider refused the credentials (401)."""
    SENT.clear()
    _tenant, headers = api.tenant_token("acme")
    refused = await messaging(api, headers, "textly", CANARY)
    fallback = await messaging(api, headers, "chatter", "tok-ok-2")
    await rule(api, headers, integration_id=refused, fallback_integration_id=fallback)
    sent = await api.client.post(SMS, json=MESSAGE, headers=headers)
    assert sent.status_code == 201, sent.text
    body = await events(api, headers, action="integration.provider_refused")
    [event] = body["data"]
    assert event["integration_id"] == refused
    assert event["actor"] == token_id(headers)
    assert (event["status_before"], event["status_after"]) == ("active", "error")
    assert event["details"]["capability"] == "send_sms"
    assert event["details"]["operation_id"] == sent.json()["data"]["id"]
    assert "Authenticate" in event["details"]["error"]
    everything = await api.client.get(EVENTS, headers=headers, params={"per_page": 100})
    assert CANARY not in everything.text
