"""The served OpenAPI document: no gaps, and what the server answers is what it declares.

The walk checks every path and method of the document: a request body where the method
takes one, a JSON schema for every status declared, the statuses every operation of its
kind can answer, each list's query parameters, and the security requirement. The live test
drives the API through success and every kind of failure and validates each body against
the schema the document declares for that path, method and status.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from relaykit.catalog import Catalog
from relaykit.storage.models import integrations
from relaykit_server.openapi import complete

from .conftest import Api, webhook_headers

pytestmark = pytest.mark.anyio

API = "/api/v1"
LIST_FILTERS = {
    f"{API}/integrations": {"status", "category"},
    f"{API}/routing-rules": {"capability"},
    f"{API}/operations": {"capability", "status", "integration_id", "idempotency_key"},
    f"{API}/delivery-attempts": {"operation_id", "integration_id", "capability", "status"},
    f"{API}/webhook-events": {"integration_id", "type", "applied"},
    f"{API}/audit-events": {"integration_id", "action", "actor", "since", "until"},
    f"{API}/integrations/{{integration_id}}/events": set(),
}
#: Operations that act on a resource but take no body.
NO_BODY = re.compile(r"/(activate|disable)$")


async def _document(api: Api) -> dict[str, Any]:
    response = await api.client.get("/schema/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in {"get", "post", "patch", "put", "delete"}
    ]


def _gaps(document: dict[str, Any]) -> list[str]:
    """Everything the walk finds missing, as readable lines."""
    gaps: list[str] = []
    for path, method, operation in _operations(document):
        where = f"{method.upper()} {path}"
        responses = operation.get("responses", {})
        for status, response in responses.items():
            schema = response.get("content", {}).get("application/json", {}).get("schema")
            if not schema:
                gaps.append(f"{where}: {status} has no JSON schema")
        parameters = {p["name"]: p for p in operation.get("parameters", [])}
        for name, parameter in parameters.items():
            if not parameter.get("schema"):
                gaps.append(f"{where}: parameter {name} has no schema")
        if not path.startswith(API + "/"):
            if operation.get("security") != []:
                gaps.append(f"{where}: outside {API} but not marked as needing no token")
            continue
        if operation.get("security") != [{"bearer": []}]:
            gaps.append(f"{where}: no bearer security requirement")
        expected = {"401"}
        takes_body = method in {"post", "patch", "put"} and not NO_BODY.search(path)
        if takes_body:
            expected |= {"400", "413", "422"}
            if "requestBody" not in operation:
                gaps.append(f"{where}: no request body")
            else:
                body = operation["requestBody"]["content"].get("application/json", {})
                if not body.get("schema"):
                    gaps.append(f"{where}: request body without a schema")
        if "{" in path:
            expected.add("404")
        if path in LIST_FILTERS and method == "get":
            expected.add("422")
            for name in LIST_FILTERS[path] | {"page", "per_page"}:
                if parameters.get(name, {}).get("in") != "query":
                    gaps.append(f"{where}: query parameter {name} is not declared")
        if not any(status.startswith("2") for status in responses):
            gaps.append(f"{where}: no success response")
        for status in sorted(expected - set(responses)):
            gaps.append(f"{where}: {status} is not declared")
    return gaps


async def test_every_operation_is_declared_whole(api: Api) -> None:
    document = await _document(api)
    assert len(_operations(document)) >= 20
    assert _gaps(document) == []


def test_the_walk_finds_gaps() -> None:
    """The walk is not vacuous: a document with each kind of gap is reported."""
    document = {
        "paths": {
            f"{API}/integrations": {
                "get": {"responses": {"200": {"content": {}}}, "security": []},
                "post": {"responses": {"201": {}}, "security": [{"bearer": []}]},
            },
            "/health": {"get": {"responses": {"200": {}}}},
        }
    }
    gaps = _gaps(document)
    assert f"GET {API}/integrations: no bearer security requirement" in gaps
    assert f"GET {API}/integrations: query parameter page is not declared" in gaps
    assert f"GET {API}/integrations: 200 has no JSON schema" in gaps
    assert f"POST {API}/integrations: no request body" in gaps
    assert f"POST {API}/integrations: 422 is not declared" in gaps
    assert "GET /health: outside /api/v1 but not marked as needing no token" in gaps


async def test_credentials_are_described_per_provider(api: Api) -> None:
    document = await _document(api)
    schemas = document["components"]["schemas"]
    create = document["paths"][f"{API}/integrations"]["post"]["requestBody"]["content"]
    body = create["application/json"]["schema"]
    mapping = body["discriminator"]["mapping"]
    assert body["discriminator"]["propertyName"] == "provider"
    assert set(mapping) == {"textly", "chatter", "paymo"}
    assert [ref["$ref"] for ref in body["oneOf"]] == list(mapping.values())
    paymo = schemas["Credentials.paymo"]
    assert paymo["required"] == ["publishable_key", "secret_key"]
    assert paymo["properties"]["secret_key"]["writeOnly"] is True
    assert paymo["properties"]["secret_key"]["x-sensitive"] is True
    assert "writeOnly" not in paymo["properties"]["publishable_key"]
    assert paymo["additionalProperties"] is False
    configure = schemas["CreateIntegration.paymo"]
    assert configure["properties"]["provider"]["const"] == "paymo"
    assert configure["properties"]["enabled_capabilities"]["items"]["enum"] == [
        "initiate_payment",
        "process_refund",
        "verify_payment",
    ]
    textly = schemas["Credentials.textly"]["properties"]["from_number"]
    assert textly["pattern"] == r"^\+[1-9]\d{1,14}$"
    update = schemas["CredentialsUpdate.paymo"]
    assert "required" not in update
    assert update["properties"]["webhook_secret"]["type"] == ["string", "null"]


def test_no_provider_installed_leaves_the_bodies_as_declared() -> None:
    document = {"paths": {}, "components": {"schemas": {}}}
    completed = complete(document, Catalog((), (), {}))
    assert not [name for name in completed["components"]["schemas"] if "Credentials" in name]
    assert not [path for path in completed["paths"] if "integrations" in path]


async def test_operations_are_declared_per_capability(api: Api) -> None:
    document = await _document(api)
    paths = document["paths"]
    assert f"{API}/operations/{{operation_id}}" in paths
    assert f"{API}/operations/{{capability}}" not in paths
    send = paths[f"{API}/operations/send_sms"]["post"]
    assert send["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SendMessageInput"
    }
    assert [p["name"] for p in send["parameters"]] == ["Idempotency-Key"]
    assert {"201", "401", "409", "422", "502", "503"} <= set(send["responses"])
    assert document["components"]["schemas"]["SendMessageInput"]["required"] == ["to", "body"]
    assert send["responses"]["201"]["links"]["getOperation"] == {
        "operationId": "getOperation",
        "parameters": {"operation_id": "$response.body#/data/id"},
    }


async def test_creates_link_to_what_their_id_leads_to(api: Api) -> None:
    document = await _document(api)
    operation_ids = {operation["operationId"] for _, _, operation in _operations(document)}
    for path in (f"{API}/integrations", f"{API}/routing-rules"):
        links = document["paths"][path]["post"]["responses"]["201"]["links"]
        assert links, path
        for link in links.values():
            assert link["operationId"] in operation_ids
            assert list(link["parameters"].values()) == ["$response.body#/data/id"]


# -- live responses against the declared schemas ------------------------------------------


class Conformance:
    """Validates each response against the schema declared for its path, method, status."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.templates = [
            (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path)
            for path in document["paths"]
        ]
        self.checked: set[tuple[str, str, str]] = set()

    def template(self, path: str) -> str:
        exact = [t for _, t in self.templates if t == path]
        if exact:
            return exact[0]
        matches = [t for pattern, t in self.templates if pattern.match(path)]
        assert matches, f"{path} is not in the document"
        return matches[0]

    def check(self, method: str, response: httpx.Response) -> httpx.Response:
        path = self.template(response.request.url.path)
        operation = self.document["paths"][path][method.lower()]
        status = str(response.status_code)
        declared = operation["responses"].get(status)
        assert declared is not None, f"{method} {path} answered {status}, not declared"
        schema = declared["content"]["application/json"]["schema"]
        validator = Draft202012Validator({**schema, "components": self.document["components"]})
        problems = [e.message for e in validator.iter_errors(response.json())]
        assert problems == [], f"{method} {path} {status}: {problems}"
        self.checked.add((method, path, status))
        return response

    def caller(self, api: Api, headers: dict[str, str]) -> Callable[..., Awaitable[httpx.Response]]:
        """``call(method, url, **kwargs)``: a request as ``headers``' tenant, its answer
        checked against the document."""

        async def call(method: str, url: str, **kwargs: Any) -> httpx.Response:
            kwargs.setdefault("headers", headers)
            return self.check(method, await api.client.request(method, url, **kwargs))

        return call


TEXTLY = {
    "provider": "textly",
    "credentials": {"account_sid": "AC1", "auth_token": "tok-1", "from_number": "+15550100"},
    "enabled_capabilities": ["send_sms"],
}


async def test_live_responses_match_their_declared_schemas(api: Api) -> None:
    document = await _document(api)
    _, headers = api.tenant_token("acme")
    conformance = Conformance(document)
    call = conformance.caller(api, headers)
    textly = TEXTLY
    created = (await call("POST", f"{API}/integrations", json=textly)).json()["data"]
    assert (await call("POST", f"{API}/integrations", json=textly)).status_code == 422
    assert (await call("POST", f"{API}/integrations", content=b"{nope")).status_code == 400
    bad = {**textly, "provider": 5, "extra": 1}
    assert (await call("POST", f"{API}/integrations", json=bad)).status_code == 422
    big = b'{"metadata": "' + b"x" * (3 * 1024 * 1024) + b'"}'
    assert (await call("POST", f"{API}/integrations", content=big)).status_code == 413
    await call("GET", f"{API}/integrations/providers")
    await call("GET", f"{API}/integrations", params={"per_page": 1})
    assert (await call("GET", f"{API}/integrations", params={"page": "x"})).status_code == 422
    integration = f"{API}/integrations/{created['id']}"
    await call("GET", integration)
    assert (await call("GET", f"{API}/integrations/0" + "1" * 25)).status_code == 404
    await call("PATCH", integration, json={"metadata": {"team": "a"}})
    assert (await call("POST", f"{integration}/activate")).status_code == 409  # unverified
    api.database.transaction_blocking(
        lambda conn: conn.execute(
            integrations.update().where(integrations.c.id == created["id"]).values(status="active")
        )
    )
    rule = (
        await call(
            "POST",
            f"{API}/routing-rules",
            json={"capability": "send_sms", "integration_id": created["id"], "is_default": True},
        )
    ).json()["data"]
    await call("GET", f"{API}/routing-rules")
    await call("PATCH", f"{API}/routing-rules/{rule['id']}", json={"priority": 5})
    sent = await call(
        "POST",
        f"{API}/operations/send_sms",
        json={"to": "+15550101", "body": "hi"},
        headers={**headers, "Idempotency-Key": "k-1"},
    )
    assert sent.status_code == 201
    operation = sent.json()["data"]
    await call("GET", f"{API}/operations/{operation['id']}")
    await call("GET", f"{API}/operations", params={"idempotency_key": "k-1"})
    attempts = await call(
        "GET", f"{API}/delivery-attempts", params={"operation_id": operation["id"]}
    )
    await call("GET", f"{API}/delivery-attempts/{attempts.json()['data'][0]['id']}")
    invalid = await call("POST", f"{API}/operations/send_sms", json={"to": "5", "body": ""})
    assert invalid.status_code == 422
    await call("POST", f"{integration}/disable")
    failed = await call("POST", f"{API}/operations/send_sms", json={"to": "+15550101", "body": "x"})
    assert failed.status_code == 409 and failed.json()["code"] == "no_active_provider"
    assert (await call("GET", integration, headers={})).status_code == 401
    await call("DELETE", f"{API}/routing-rules/{rule['id']}")
    await call("DELETE", integration)
    assert (await call("GET", "/health", headers={})).status_code == 200
    assert len(conformance.checked) >= 25


async def test_live_webhook_answers_match_their_declared_schemas(api: Api) -> None:
    document = await _document(api)
    receiver = document["paths"]["/webhooks/{integration_id}"]["post"]
    assert receiver["security"] == []
    assert {"200", "400", "413", "503"} <= set(receiver["responses"])
    assert "application/json" in receiver["requestBody"]["content"]
    _, headers = api.tenant_token("acme")
    conformance = Conformance(document)
    call = conformance.caller(api, headers)
    textly = TEXTLY
    created = (await call("POST", f"{API}/integrations", json=textly)).json()["data"]
    path = f"/webhooks/{created['id']}"
    body = b'{"id": "ev-1", "status": "delivered", "object": "msg-1"}'
    signed = webhook_headers("tok-1", body, url=f"http://testserver.local{path}")
    assert (await call("POST", path, content=body, headers=signed)).status_code == 200
    assert (await call("POST", path, content=body, headers={})).status_code == 400
    big = b"x" * (3 * 1024 * 1024)
    assert (await call("POST", path, content=big, headers={})).status_code == 413
    events = await call("GET", f"{API}/webhook-events", params={"applied": "false"})
    await call("GET", f"{API}/webhook-events/{events.json()['data'][0]['id']}")
    assert (await call("GET", f"{API}/webhook-events/{'0' * 26}")).status_code == 404
    bad = await call("GET", f"{API}/webhook-events", params={"applied": "yes"})
    assert bad.status_code == 422
    await call("GET", f"{API}/integrations/{created['id']}/webhook")
    assert (await call("GET", f"{API}/integrations/{'0' * 26}/webhook")).status_code == 404
    assert (await call("GET", f"{API}/webhook-events", headers={})).status_code == 401
    assert len(conformance.checked) >= 11
