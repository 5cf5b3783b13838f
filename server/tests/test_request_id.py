"""X-Request-ID: honoured (bounded, printable) or made, and returned on every response, the
ones no route answers included; the request's context is set while it runs and restored
after."""

from __future__ import annotations

import re
from typing import Any

import pytest
from litestar import get

from relaykit import context
from relaykit.context import REQUEST_ID, TENANT_ID
from relaykit_server.observability import MAX_REQUEST_ID_LENGTH, incoming_request_id

from .conftest import Api
from .test_routing_api import MESSAGE, SMS, messaging

pytestmark = pytest.mark.anyio

SEEN: list[dict[str, str | None]] = []


@get("/test/boom", include_in_schema=False)
async def boom() -> None:
    raise RuntimeError("a bug in a handler")


@get("/test/context", include_in_schema=False)
async def seen_context() -> dict[str, str]:
    SEEN.append(context.current())
    return {"ok": "yes"}


def made_id(response: Any) -> str:
    value = response.headers.get("x-request-id")
    assert value is not None, f"{response.status_code} without X-Request-ID"
    assert re.fullmatch("[0-9a-f]{32}", value), value  # one the server made
    return str(value)


async def test_every_kind_of_response_carries_a_request_id(api: Api) -> None:
    api.client.app.register(boom)
    _, headers = api.tenant_token("acme")
    client = api.client
    answers = {
        "200 list": await client.get("/api/v1/integrations", headers=headers),
        "401 no token": await client.get("/api/v1/integrations"),
        "404 unknown path": await client.get("/no/such/path"),
        "404 unknown api path": await client.get("/api/v1/nothing-here", headers=headers),
        "405": await client.delete("/health"),
        "413": await client.post(
            "/api/v1/integrations",
            content=b"{" + b" " * (3 * 1024 * 1024) + b"}",
            headers={**headers, "content-type": "application/json"},
        ),
        "422": await client.post("/api/v1/integrations", json={"provider": 5}, headers=headers),
        "400 webhook": await client.post("/webhooks/01hzzzzzzzzzzzzzzzzzzzzzzz", content=b"{}"),
        "500": await client.get("/test/boom"),
        "health": await client.get("/health"),
        "metrics": await client.get("/metrics"),
    }
    statuses = {name: response.status_code for name, response in answers.items()}
    assert statuses == {
        "200 list": 200,
        "401 no token": 401,
        "404 unknown path": 404,
        "404 unknown api path": 404,
        "405": 405,
        "413": 413,
        "422": 422,
        "400 webhook": 400,
        "500": 500,
        "health": 200,
        "metrics": 200,
    }
    ids = [made_id(response) for response in answers.values()]
    assert len(set(ids)) == len(ids)  # one per request
    # the 500 is still the envelope, with no trace of the exception
    assert answers["500"].json()["success"] is False
    assert "a bug" not in answers["500"].text


@pytest.mark.parametrize(
    "incoming",
    ["abc-123", "trace:0af7651916cd43dd8448eb211c80319c", "x" * MAX_REQUEST_ID_LENGTH, "~!#$%"],
)
async def test_a_bounded_printable_incoming_id_is_honoured(api: Api, incoming: str) -> None:
    _, headers = api.tenant_token("acme")
    for path, extra in (("/api/v1/integrations", headers), ("/nowhere", {})):
        response = await api.client.get(path, headers={**extra, "X-Request-ID": incoming})
        assert response.headers["x-request-id"] == incoming


@pytest.mark.parametrize(
    "incoming",
    [
        "x" * (MAX_REQUEST_ID_LENGTH + 1),
        "has space",
        "tab\tinside",
        "bell\x07",
        "",
        "caf\u00e9",
    ],
)
async def test_a_bad_incoming_id_is_replaced(api: Api, incoming: str) -> None:
    raw = [(b"x-request-id", incoming.encode("latin-1"))]
    assert incoming_request_id({"headers": raw}) is None  # type: ignore[typeddict-item]
    response = await api.client.get("/health", headers=[(b"X-Request-ID", raw[0][1])])
    assert response.headers["x-request-id"] != incoming
    made_id(response)


async def test_the_context_holds_the_request_and_is_restored_after(api: Api) -> None:
    """A handler sees its request's id, tenant, actor (the token id) and integration; after
    the request nothing is left set (the test client runs the app in this very task)."""
    tenant_id, headers = api.tenant_token("acme")
    token_id = headers["Authorization"].split("_")[1]
    api.client.app.register(seen_context)
    SEEN.clear()
    response = await api.client.get("/test/context", headers={"X-Request-ID": "req-1"})
    assert response.status_code == 200
    assert SEEN == [
        {"request_id": "req-1", "actor": "cli", "tenant_id": None, "integration_id": None}
    ]
    integration_id = await messaging(api, headers, "textly", "tok-ok-1")
    response = await api.client.get(
        f"/api/v1/integrations/{integration_id}", headers={**headers, "X-Request-ID": "req-2"}
    )
    assert response.status_code == 200
    assert REQUEST_ID.get() is None and TENANT_ID.get() is None
    assert context.current()["actor"] == "cli"
    sent = await api.client.post(SMS, json=MESSAGE, headers={**headers, "X-Request-ID": "req-3"})
    assert sent.status_code in (201, 409, 502)
    assert sent.headers["x-request-id"] == "req-3"
    assert tenant_id and token_id
