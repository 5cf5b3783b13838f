"""The integration endpoints of the contract, every one and each of its errors."""

from __future__ import annotations

import re
from typing import Any

import anyio
import pytest
import sqlalchemy as sa

from relaykit.storage.models import integrations

from .conftest import Api

pytestmark = pytest.mark.anyio

BASE = "/api/v1/integrations"
SECRET = "sk_live_canary_9f8e7d6c5b4a"
WEBHOOK = "whsec_canary_0a1b2c3d4e"
ID = re.compile(r"^[0-9a-z]{26}$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def paymo_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "provider": "paymo",
        "credentials": {
            "publishable_key": "pk_test_placeholder",
            "secret_key": SECRET,
            "webhook_secret": WEBHOOK,
        },
        "enabled_capabilities": ["initiate_payment", "process_refund", "verify_payment"],
        "metadata": {"environment": "production", "account_label": "Primary Paymo Account"},
    }
    body.update(overrides)
    return body


def textly_body() -> dict[str, Any]:
    return {
        "provider": "textly",
        "credentials": {
            "account_sid": "account_sid_placeholder",
            "auth_token": "auth_token_canary_1234",
            "from_number": "+15550100000",
        },
        "enabled_capabilities": ["send_sms"],
    }


async def create(
    api: Api, headers: dict[str, str], body: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = await api.client.post(BASE, json=body or paymo_body(), headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


def force_status(api: Api, integration_id: str, status: str) -> None:
    """Stand in for the verification worker ([3/8]) to put a row in a status."""

    def apply(conn: sa.Connection) -> None:
        conn.execute(
            integrations.update().where(integrations.c.id == integration_id).values(status=status)
        )

    api.database.transaction_blocking(apply)


def assert_invalid(response: Any, errors: dict[str, list[str]]) -> None:
    assert response.status_code == 422, response.text
    assert response.json() == {
        "success": False,
        "message": "The given data was invalid.",
        "errors": errors,
    }


# -- create ------------------------------------------------------------------------------------


async def test_create_returns_the_contract_shape(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    response = await api.client.post(BASE, json=paymo_body(), headers=headers)
    assert response.status_code == 201
    body = response.json()
    data = body["data"]
    assert body["success"] is True
    assert body["message"] == "Integration configured successfully"
    assert body["meta"] == {}
    assert list(data) == [
        "id",
        "provider",
        "display_name",
        "category",
        "status",
        "enabled_capabilities",
        "credentials",
        "metadata",
        "verified_at",
        "created_at",
        "updated_at",
    ]
    assert ID.match(data["id"])
    assert data["provider"] == "paymo" and data["display_name"] == "Paymo"
    assert data["category"] == "payment"
    assert data["status"] == "pending_verify"
    assert data["enabled_capabilities"] == ["initiate_payment", "process_refund", "verify_payment"]
    assert data["credentials"] == {
        "publishable_key": "pk_test_placeholder",
        "secret_key": None,
        "webhook_secret": None,
    }
    assert data["metadata"] == {
        "environment": "production",
        "account_label": "Primary Paymo Account",
    }
    assert data["verified_at"] is None
    assert TIMESTAMP.match(data["created_at"]) and data["created_at"] == data["updated_at"]
    assert SECRET not in response.text and WEBHOOK not in response.text


async def test_optional_fields_may_be_left_out(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    body = paymo_body()
    del body["metadata"]
    del body["credentials"]["webhook_secret"]
    data = await create(api, headers, body)
    assert data["metadata"] == {}
    assert data["credentials"]["webhook_secret"] is None


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            {"credentials": {}, "enabled_capabilities": []},
            {"provider": ["The provider field is required."]},
        ),
        (
            paymo_body(provider="nope"),
            {"provider": ["The selected provider is invalid."]},
        ),
        (
            paymo_body(provider=7),
            {"provider": ["The provider field must be a string."]},
        ),
        (
            {"provider": "paymo", "enabled_capabilities": []},
            {"credentials": ["The credentials field is required."]},
        ),
        (
            paymo_body(credentials="pk:sk"),
            {"credentials": ["The credentials field must be an object."]},
        ),
        (
            paymo_body(credentials={"publishable_key": "pk_1"}),
            {"credentials.secret_key": ["The credentials.secret_key field is required."]},
        ),
        (
            paymo_body(credentials={"publishable_key": "pk_1", "secret_key": ""}),
            {"credentials.secret_key": ["The credentials.secret_key field is required."]},
        ),
        (
            paymo_body(credentials={"publishable_key": "pk_1", "secret_key": 12345}),
            {"credentials.secret_key": ["The credentials.secret_key field must be a string."]},
        ),
        (
            paymo_body(credentials={"publishable_key": "pk_1", "secret_key": "sk_1", "pin": "1"}),
            {"credentials.pin": ["This field is not allowed."]},
        ),
        (
            paymo_body(credentials={"publishable_key": "pk_1", "secret_key": " sk_1 "}),
            {
                "credentials.secret_key": [
                    "The credentials.secret_key field must not start or end with white space."
                ]
            },
        ),
        (
            paymo_body(credentials={"publishable_key": "pk_1", "secret_key": "s" * 5000}),
            {
                "credentials.secret_key": [
                    "The credentials.secret_key field must not be greater than 4096 characters."
                ]
            },
        ),
        (
            paymo_body(enabled_capabilities=["send_sms"]),
            {
                "enabled_capabilities": [
                    "The enabled_capabilities must be a subset of the provider's capabilities: "
                    "initiate_payment, process_refund, verify_payment."
                ]
            },
        ),
        (
            paymo_body(enabled_capabilities="initiate_payment"),
            {
                "enabled_capabilities": [
                    "The enabled_capabilities field must be an array of capability names."
                ]
            },
        ),
        (
            paymo_body(enabled_capabilities=["verify_payment", "verify_payment"]),
            {
                "enabled_capabilities": [
                    "The enabled_capabilities field must not contain duplicates."
                ]
            },
        ),
        (
            {"provider": "paymo", "credentials": {"publishable_key": "pk", "secret_key": "sk"}},
            {"enabled_capabilities": ["The enabled_capabilities field is required."]},
        ),
        (
            paymo_body(metadata=["a"]),
            {"metadata": ["The metadata field must be an object."]},
        ),
        (
            paymo_body(metadata={"blob": "x" * 20000}),
            {"metadata": ["The metadata field must not be larger than 16384 bytes."]},
        ),
        (
            paymo_body(status="active", id="01hwxyz123abc456def789ghi0"),
            {"status": ["This field is not allowed."], "id": ["This field is not allowed."]},
        ),
    ],
)
async def test_create_validation(
    api: Api, body: dict[str, Any], errors: dict[str, list[str]]
) -> None:
    _, headers = api.tenant_token("acme")
    response = await api.client.post(BASE, json=body, headers=headers)
    assert_invalid(response, errors)
    assert SECRET not in response.text
    listed = await api.client.get(BASE, headers=headers)
    assert listed.json()["meta"]["total"] == 0  # nothing was stored


async def test_all_problems_come_back_at_once(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    response = await api.client.post(
        BASE,
        json={
            "provider": "textly",
            "credentials": {"from_number": "555"},
            "enabled_capabilities": ["x"],
            "metadata": 1,
        },
        headers=headers,
    )
    assert response.status_code == 422
    assert set(response.json()["errors"]) == {
        "credentials.account_sid",
        "credentials.auth_token",
        "credentials.from_number",
        "enabled_capabilities",
        "metadata",
    }
    assert response.json()["errors"]["credentials.from_number"] == [
        "The credentials.from_number field format is invalid."
    ]


async def test_deeply_nested_metadata_is_refused(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    nested: dict[str, Any] = {}
    cursor = nested
    for _ in range(50):
        cursor["a"] = {}
        cursor = cursor["a"]
    response = await api.client.post(BASE, json=paymo_body(metadata=nested), headers=headers)
    assert_invalid(
        response, {"metadata": ["The metadata field must not nest deeper than 8 levels."]}
    )
    hostile = b'{"provider":"paymo","metadata":' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    response = await api.client.post(
        BASE, content=hostile, headers={**headers, "content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["errors"] == {"body": ["The request body is nested too deeply."]}


@pytest.mark.parametrize(
    ("content", "status", "expected"),
    [
        (
            b"{not json",
            400,
            {
                "success": False,
                "message": "The request body is not valid JSON.",
                "code": "malformed_json",
            },
        ),
        (
            b"",
            422,
            {
                "success": False,
                "message": "The given data was invalid.",
                "errors": {"body": ["The request body must be a JSON object."]},
            },
        ),
        (
            b"[1, 2]",
            422,
            {
                "success": False,
                "message": "The given data was invalid.",
                "errors": {"body": ["The request body must be a JSON object."]},
            },
        ),
        (
            b'"text"',
            422,
            {
                "success": False,
                "message": "The given data was invalid.",
                "errors": {"body": ["The request body must be a JSON object."]},
            },
        ),
    ],
)
async def test_bodies_that_are_not_objects(
    api: Api, content: bytes, status: int, expected: Any
) -> None:
    _, headers = api.tenant_token("acme")
    response = await api.client.post(
        BASE, content=content, headers={**headers, "content-type": "application/json"}
    )
    assert response.status_code == status
    assert response.json() == expected


async def test_a_two_megabyte_body_is_413(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    big = paymo_body(metadata={"blob": "x" * (2 * 1024 * 1024)})
    response = await api.client.post(BASE, json=big, headers=headers)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


async def test_one_integration_per_provider_and_recreate_after_delete(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    first = await create(api, headers)
    again = await api.client.post(BASE, json=paymo_body(), headers=headers)
    assert_invalid(again, {"provider": ["An integration for this provider already exists."]})
    assert (await api.client.delete(f"{BASE}/{first['id']}", headers=headers)).status_code == 200
    second = await create(api, headers)
    assert second["id"] != first["id"]


async def test_fifty_concurrent_creates_give_one_integration(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    statuses: list[int] = []

    async def one() -> None:
        response = await api.client.post(BASE, json=paymo_body(), headers=headers)
        statuses.append(response.status_code)
        if response.status_code == 422:
            assert response.json()["errors"] == {
                "provider": ["An integration for this provider already exists."]
            }

    async with anyio.create_task_group() as group:
        for _ in range(50):
            group.start_soon(one)
    assert sorted(statuses) == [201] + [422] * 49
    listed = await api.client.get(BASE, headers=headers)
    assert listed.json()["meta"]["total"] == 1


# -- read and list ------------------------------------------------------------------------------


async def test_get_returns_the_integration(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    created = await create(api, headers)
    response = await api.client.get(f"{BASE}/{created['id']}", headers=headers)
    assert response.status_code == 200
    assert response.json() == {"success": True, "data": created, "meta": {}}


@pytest.mark.parametrize(
    "bad_id", ["01hwxyz123abc456def789ghi0", "nope", "01HWXYZ123ABC456DEF789GHI0", "x" * 300]
)
async def test_unknown_ids_are_404(api: Api, bad_id: str) -> None:
    _, headers = api.tenant_token("acme")
    for method, suffix in [
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("POST", "/activate"),
        ("POST", "/disable"),
    ]:
        response = await api.client.request(
            method,
            f"{BASE}/{bad_id}{suffix}",
            headers=headers,
            json={} if method == "PATCH" else None,
        )
        assert response.status_code == 404, (method, suffix)
        assert response.json() == {
            "success": False,
            "message": "Integration not found.",
            "code": "not_found",
        }


async def test_list_paginates_in_the_contract_shape(api: Api) -> None:
    _tenant_id, headers = api.tenant_token("acme")
    paymo = await create(api, headers)
    textly = await create(api, headers, textly_body())
    response = await api.client.get(BASE, headers=headers)
    assert response.json() == {
        "success": True,
        "data": [paymo, textly],
        "meta": {"current_page": 1, "per_page": 25, "total": 2, "last_page": 1},
        "links": {
            "first": "/api/v1/integrations?page=1",
            "last": "/api/v1/integrations?page=1",
            "prev": None,
            "next": None,
        },
    }
    page2 = (await api.client.get(BASE, params={"per_page": 1, "page": 2}, headers=headers)).json()
    assert [i["id"] for i in page2["data"]] == [textly["id"]]
    assert page2["meta"] == {"current_page": 2, "per_page": 1, "total": 2, "last_page": 2}
    assert page2["links"] == {
        "first": "/api/v1/integrations?per_page=1&page=1",
        "last": "/api/v1/integrations?per_page=1&page=2",
        "prev": "/api/v1/integrations?per_page=1&page=1",
        "next": None,
    }
    beyond = (await api.client.get(BASE, params={"page": 9}, headers=headers)).json()
    assert beyond["data"] == [] and beyond["meta"]["current_page"] == 9


async def test_list_filters(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    paymo = await create(api, headers)
    textly = await create(api, headers, textly_body())
    force_status(api, paymo["id"], "active")

    async def ids(**params: Any) -> list[str]:
        body = (await api.client.get(BASE, params=params, headers=headers)).json()
        return [i["id"] for i in body["data"]]

    assert await ids(status="active") == [paymo["id"]]
    assert await ids(status="pending_verify") == [textly["id"]]
    assert await ids(category="communication") == [textly["id"]]
    assert await ids(status="active", category="communication") == []
    links = (
        await api.client.get(
            BASE,
            params={"status": "active", "category": "payment", "per_page": 15},
            headers=headers,
        )
    ).json()["links"]
    assert (
        links["first"] == "/api/v1/integrations?status=active&category=payment&per_page=15&page=1"
    )


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"status": "enabled"}, "status"),
        ({"category": "crypto"}, "category"),
        ({"per_page": 101}, "per_page"),
        ({"per_page": 0}, "per_page"),
        ({"per_page": "ten"}, "per_page"),
        ({"page": 0}, "page"),
        ({"page": "first"}, "page"),
        ({"page": 9223372036854775807}, "page"),  # past any offset a database can hold
        ({"page": 10**30}, "page"),
    ],
)
async def test_bad_list_parameters_are_422(api: Api, params: dict[str, Any], key: str) -> None:
    _, headers = api.tenant_token("acme")
    response = await api.client.get(BASE, params=params, headers=headers)
    assert response.status_code == 422
    assert list(response.json()["errors"]) == [key]


# -- update --------------------------------------------------------------------------------------


async def test_patch_metadata_or_capabilities_keeps_status(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    created = await create(api, headers)
    force_status(api, created["id"], "active")
    response = await api.client.patch(
        f"{BASE}/{created['id']}",
        json={
            "metadata": {"rotated_at": "2026-03-01"},
            "enabled_capabilities": ["initiate_payment"],
        },
        headers=headers,
    )
    assert response.status_code == 200
    body = response.json()
    assert body["message"] == "Integration updated successfully"
    data = body["data"]
    assert data["id"] == created["id"]
    assert data["status"] == "active"
    assert data["metadata"] == {"rotated_at": "2026-03-01"}  # replaced, not merged
    assert data["enabled_capabilities"] == ["initiate_payment"]
    assert data["credentials"] == created["credentials"]


async def test_patch_credentials_is_partial_and_requeues(api: Api) -> None:
    tenant_id, headers = api.tenant_token("acme")
    created = await create(api, headers)
    force_status(api, created["id"], "active")
    new_secret = "sk_live_canary_rotated_0001"
    response = await api.client.patch(
        f"{BASE}/{created['id']}",
        json={
            "credentials": {"publishable_key": "pk_test_placeholder_new", "secret_key": new_secret}
        },
        headers=headers,
    )
    data = response.json()["data"]
    assert data["status"] == "pending_verify" and data["verified_at"] is None
    assert data["credentials"] == {
        "publishable_key": "pk_test_placeholder_new",
        "secret_key": None,
        "webhook_secret": None,
    }
    assert new_secret not in response.text
    # the webhook secret, not sent, kept its sealed value; the new secret replaced the old
    service = api.services.integrations
    row = api.database.read_blocking(
        lambda conn: conn.execute(
            sa.select(integrations).where(integrations.c.id == created["id"])
        ).one()
    )
    from relaykit.sealing import SealContext, open_credentials

    opened = open_credentials(
        row.sealed_credentials, SealContext(tenant_id, created["id"], "paymo"), service.key_provider
    )
    assert opened == {"secret_key": new_secret, "webhook_secret": WEBHOOK}
    assert row.credentials_version == 2


async def test_patch_with_the_same_credentials_changes_nothing_unless_in_error(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    created = await create(api, headers)
    force_status(api, created["id"], "active")
    same = {"credentials": {"secret_key": SECRET}}
    unchanged = (
        await api.client.patch(f"{BASE}/{created['id']}", json=same, headers=headers)
    ).json()["data"]
    assert unchanged["status"] == "active"
    force_status(api, created["id"], "error")
    retried = (
        await api.client.patch(f"{BASE}/{created['id']}", json=same, headers=headers)
    ).json()["data"]
    assert retried["status"] == "pending_verify"


async def test_patch_null_clears_an_optional_field_and_refuses_a_required_one(api: Api) -> None:
    tenant_id, headers = api.tenant_token("acme")
    created = await create(api, headers)
    url = f"{BASE}/{created['id']}"
    cleared = await api.client.patch(
        url, json={"credentials": {"webhook_secret": None}}, headers=headers
    )
    assert cleared.status_code == 200
    row = api.database.read_blocking(
        lambda conn: conn.execute(
            sa.select(integrations).where(integrations.c.id == created["id"])
        ).one()
    )
    from relaykit.sealing import SealContext, open_credentials

    opened = open_credentials(
        row.sealed_credentials,
        SealContext(tenant_id, created["id"], "paymo"),
        api.services.integrations.key_provider,
    )
    assert opened == {"secret_key": SECRET}
    refused = await api.client.patch(
        url, json={"credentials": {"secret_key": None}}, headers=headers
    )
    assert_invalid(
        refused, {"credentials.secret_key": ["The credentials.secret_key field is required."]}
    )


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"provider": "textly"}, {"provider": ["This field is not allowed."]}),
        ({"credentials": {"pin": "1"}}, {"credentials.pin": ["This field is not allowed."]}),
        ({"credentials": []}, {"credentials": ["The credentials field must be an object."]}),
        (
            {"enabled_capabilities": ["send_sms"]},
            {
                "enabled_capabilities": [
                    "The enabled_capabilities must be a subset of the provider's capabilities: "
                    "initiate_payment, process_refund, verify_payment."
                ]
            },
        ),
        ({"metadata": "note"}, {"metadata": ["The metadata field must be an object."]}),
    ],
)
async def test_patch_validation(
    api: Api, body: dict[str, Any], errors: dict[str, list[str]]
) -> None:
    _, headers = api.tenant_token("acme")
    created = await create(api, headers)
    response = await api.client.patch(f"{BASE}/{created['id']}", json=body, headers=headers)
    assert_invalid(response, errors)
    unchanged = (await api.client.get(f"{BASE}/{created['id']}", headers=headers)).json()["data"]
    assert unchanged == created


async def test_metadata_verification_key_is_reserved(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    created = await create(api, headers, paymo_body(metadata={"verification": "mine", "a": 1}))
    assert created["metadata"] == {"a": 1}


# -- delete, activate, disable --------------------------------------------------------------------


async def test_delete_is_soft_and_final(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    created = await create(api, headers)
    response = await api.client.delete(f"{BASE}/{created['id']}", headers=headers)
    assert response.status_code == 200
    assert response.json() == {"success": True, "message": "Integration deleted successfully"}
    assert (await api.client.get(f"{BASE}/{created['id']}", headers=headers)).status_code == 404
    assert (await api.client.get(BASE, headers=headers)).json()["data"] == []
    assert (await api.client.delete(f"{BASE}/{created['id']}", headers=headers)).status_code == 404
    row = api.database.read_blocking(
        lambda conn: conn.execute(
            sa.select(integrations.c.deleted_at).where(integrations.c.id == created["id"])
        ).one()
    )
    assert row.deleted_at is not None  # still there, marked


async def test_disable_and_activate(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    created = await create(api, headers)
    url = f"{BASE}/{created['id']}"
    force_status(api, created["id"], "active")
    disabled = await api.client.post(f"{url}/disable", headers=headers)
    assert disabled.status_code == 200
    assert disabled.json()["message"] == "Integration disabled successfully"
    assert disabled.json()["data"]["status"] == "inactive"
    activated = await api.client.post(f"{url}/activate", headers=headers)
    assert activated.status_code == 200
    assert activated.json()["message"] == "Integration activated successfully"
    assert activated.json()["data"]["status"] == "active"


@pytest.mark.parametrize(
    ("status", "action", "message"),
    [
        ("active", "activate", "The integration is already active."),
        ("inactive", "disable", "The integration is already inactive."),
        (
            "pending_verify",
            "activate",
            "The integration is awaiting credential verification; it becomes active by itself once its credentials are verified.",
        ),
        (
            "pending_verify",
            "disable",
            "Only an active integration can be disabled; this one is awaiting credential verification and receives no operations until it is verified.",
        ),
        (
            "error",
            "activate",
            "The integration is in error; update its credentials with PATCH to verify them again.",
        ),
        (
            "error",
            "disable",
            "Only an active integration can be disabled; this one is in error and receives no operations.",
        ),
    ],
)
async def test_forbidden_transitions_are_409(
    api: Api, status: str, action: str, message: str
) -> None:
    _, headers = api.tenant_token("acme")
    created = await create(api, headers)
    force_status(api, created["id"], status)
    response = await api.client.post(f"{BASE}/{created['id']}/{action}", headers=headers)
    assert response.status_code == 409
    assert response.json() == {"success": False, "message": message, "code": "conflict"}
    assert (await api.client.get(f"{BASE}/{created['id']}", headers=headers)).json()["data"][
        "status"
    ] == status


# -- tenant isolation --------------------------------------------------------------------------------


async def test_another_tenants_integration_is_not_found_anywhere(api: Api) -> None:
    _, owner = api.tenant_token("acme")
    _, stranger = api.tenant_token("globex")
    created = await create(api, owner)
    force_status(api, created["id"], "active")
    url = f"{BASE}/{created['id']}"
    for method, suffix, body in [
        ("GET", "", None),
        ("PATCH", "", {"metadata": {}}),
        ("DELETE", "", None),
        ("POST", "/activate", None),
        ("POST", "/disable", None),
    ]:
        response = await api.client.request(method, f"{url}{suffix}", headers=stranger, json=body)
        assert response.status_code == 404, (method, suffix)
    assert (await api.client.get(BASE, headers=stranger)).json()["meta"]["total"] == 0
    providers = (await api.client.get(f"{BASE}/providers", headers=stranger)).json()["data"]
    assert all(not p["is_configured"] for p in providers)
    # the owner's integration is untouched
    assert (await api.client.get(url, headers=owner)).json()["data"]["status"] == "active"
    # and the stranger can configure the same provider for itself
    await create(api, stranger)


# -- the read cache (SQLite; on PostgreSQL the same assertions hold with no cache) -------------


async def test_cached_reads_never_outlive_a_commit_from_another_process(
    api: Api, settings: Any
) -> None:
    """List and get are answered from the response cache until the database changes; a
    write through another handle (as the CLI or another server process makes) is seen by
    the very next request, and so is a token revoked that way."""
    from relaykit import tenants as store
    from relaykit.storage.database import open_database

    _, headers = api.tenant_token("acme")
    made = await create(api, headers)
    first = await api.client.get(BASE, headers=headers)
    again = await api.client.get(BASE, headers=headers)
    assert first.content == again.content and first.json()["meta"]["total"] == 1
    one = await api.client.get(f"{BASE}/{made['id']}", headers=headers)
    assert one.json()["data"]["status"] == "pending_verify"

    other = open_database(settings, migrate=False)  # its own connections, like a process
    try:
        other.transaction_blocking(
            lambda conn: conn.execute(
                integrations.update().where(integrations.c.id == made["id"]).values(status="active")
            )
        )
        listed = await api.client.get(BASE, headers=headers)
        assert listed.json()["data"][0]["status"] == "active"
        one = await api.client.get(f"{BASE}/{made['id']}", headers=headers)
        assert one.json()["data"]["status"] == "active"
        # The query string is part of what is kept: another filter is another answer.
        filtered = await api.client.get(BASE, params={"status": "inactive"}, headers=headers)
        assert filtered.json()["data"] == [] and filtered.json()["meta"]["total"] == 0

        other.transaction_blocking(store.revoke_token, headers["Authorization"].split()[1])
        refused = await api.client.get(BASE, headers=headers)
        assert refused.status_code == 401
    finally:
        other.dispose()


async def test_a_tenant_never_gets_another_tenants_cached_answer(api: Api) -> None:
    _, acme = api.tenant_token("acme")
    _, beta = api.tenant_token("beta")
    made = await create(api, acme)
    assert len((await api.client.get(BASE, headers=acme)).json()["data"]) == 1
    assert (await api.client.get(BASE, headers=beta)).json()["data"] == []
    assert (await api.client.get(f"{BASE}/{made['id']}", headers=beta)).status_code == 404
    assert (await api.client.get(f"{BASE}/{made['id']}", headers=acme)).status_code == 200
