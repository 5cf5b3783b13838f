"""GET /api/v1/integrations/providers in the contract's exact shape."""

from __future__ import annotations

import pytest

from .conftest import Api

pytestmark = pytest.mark.anyio

URL = "/api/v1/integrations/providers"


async def configure(api: Api, tenant_id: str, provider: str, *, deleted: bool = False) -> None:
    credentials = {
        "textly": {"account_sid": "AC1", "auth_token": "tok-123456", "from_number": "+15550100000"},
        "paymo": {"publishable_key": "pk_1", "secret_key": "sk_123456"},
    }[provider]
    service = api.services.integrations
    created = await service.create(
        tenant_id,
        {"provider": provider, "credentials": credentials, "enabled_capabilities": []},
    )
    if deleted:
        await service.delete(tenant_id, created.id)


async def test_exact_contract_shape(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    response = await api.client.get(URL, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert [p["name"] for p in body["data"]] == ["chatter", "paymo", "textly"]
    body["data"] = body["data"][1:]  # chatter is textly under another name
    assert body == {
        "success": True,
        "message": "Providers retrieved successfully",
        "data": [
            {
                "name": "paymo",
                "display_name": "Paymo",
                "category": "payment",
                "capabilities": ["initiate_payment", "process_refund", "verify_payment"],
                "credential_schema": {
                    "publishable_key": {"type": "string", "sensitive": False, "required": True},
                    "secret_key": {"type": "string", "sensitive": True, "required": True},
                    "webhook_secret": {"type": "string", "sensitive": True, "required": False},
                },
                "is_configured": False,
            },
            {
                "name": "textly",
                "display_name": "Textly",
                "category": "communication",
                "capabilities": ["send_sms", "send_whatsapp"],
                "credential_schema": {
                    "account_sid": {"type": "string", "sensitive": False, "required": True},
                    "auth_token": {"type": "string", "sensitive": True, "required": True},
                    "from_number": {"type": "string", "sensitive": False, "required": True},
                },
                "is_configured": False,
            },
        ],
        "meta": {},
    }
    # Key order on the wire follows the contract too (clients diff responses).
    assert list(body["data"][0]) == [
        "name",
        "display_name",
        "category",
        "capabilities",
        "credential_schema",
        "is_configured",
    ]


async def test_is_configured_is_per_tenant_and_ignores_deleted(api: Api) -> None:
    acme_id, acme = api.tenant_token("acme")
    other_id, other = api.tenant_token("other")
    await configure(api, acme_id, "textly")
    await configure(api, other_id, "paymo", deleted=True)

    def configured(body: dict) -> dict[str, bool]:  # type: ignore[type-arg]
        return {p["name"]: p["is_configured"] for p in body["data"]}

    assert configured((await api.client.get(URL, headers=acme)).json()) == {
        "chatter": False,
        "paymo": False,
        "textly": True,
    }
    assert configured((await api.client.get(URL, headers=other)).json()) == {
        "chatter": False,
        "paymo": False,
        "textly": False,
    }


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer not-a-token",
        "Bearer rk_" + "0" * 26 + "_" + "a" * 43,
        "Bearer " + "x" * 5000,
    ],
)
async def test_missing_or_bad_token_is_401_in_the_envelope(
    api: Api, authorization: str | None
) -> None:
    api.tenant_token("acme")
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await api.client.get(URL, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {
        "success": False,
        "message": "Unauthenticated.",
        "code": "unauthenticated",
    }


async def test_revoked_token_is_refused(api: Api) -> None:
    from relaykit import tenants as store

    _, headers = api.tenant_token("acme")
    assert (await api.client.get(URL, headers=headers)).status_code == 200
    token = headers["Authorization"].split()[1]
    api.database.transaction_blocking(store.revoke_token, token)
    assert (await api.client.get(URL, headers=headers)).status_code == 401


async def test_unknown_route_and_method_use_the_envelope(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    missing = await api.client.get("/api/v1/nothing-here", headers=headers)
    assert missing.status_code == 404
    assert missing.json() == {"success": False, "message": "Not found.", "code": "not_found"}
    wrong = await api.client.delete(URL, headers=headers)
    assert wrong.status_code == 405
    assert wrong.json()["code"] == "method_not_allowed"


async def test_openapi_document_is_served(api: Api) -> None:
    response = await api.client.get("/schema/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert URL in document["paths"]
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


async def test_health_needs_no_token(api: Api) -> None:
    response = await api.client.get("/health")
    assert response.status_code == 200 and response.json()["data"] == {"status": "ok"}


async def test_options_needs_no_token(api: Api) -> None:
    """A CORS preflight carries no credentials: OPTIONS passes the bearer middleware, as
    with Litestar's own authentication middleware."""
    response = await api.client.options("/api/v1/integrations")
    assert response.status_code == 204
    assert "POST" in response.headers["allow"]
