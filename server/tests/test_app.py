"""The app factory, its lifespan, and the single error mapping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar, get, post
from litestar.params import FromQuery, JSONBody
from litestar.testing import AsyncTestClient

from relaykit.catalog import DuplicateProviderError
from relaykit.errors import ConflictError, NotFoundError, ValidationError
from relaykit.plugins import make_plugin_manager
from relaykit.settings import Settings
from relaykit_server import create_app
from relaykit_server.errors import EXCEPTION_HANDLERS

from .conftest import TestProviders

pytestmark = pytest.mark.anyio


def test_create_app_does_no_work(tmp_path: Path) -> None:
    settings = Settings.from_env({"RELAYKIT_HOME": str(tmp_path / "home")})
    create_app(settings, plugin_manager=make_plugin_manager(load_entrypoints=False))
    assert not (tmp_path / "home").exists()  # the lifespan makes the home, not the factory


async def test_duplicate_providers_stop_the_start(tmp_path: Path) -> None:
    pm = make_plugin_manager(
        load_entrypoints=False, plugins=[("one", TestProviders()), ("two", TestProviders())]
    )
    app = create_app(Settings.from_env({"RELAYKIT_HOME": str(tmp_path)}), plugin_manager=pm)
    with pytest.raises(BaseException) as info:
        async with AsyncTestClient(app=app):
            pass
    if isinstance(info.value, BaseExceptionGroup):
        assert info.group_contains(DuplicateProviderError, match="one and two")
    else:
        assert isinstance(info.value, DuplicateProviderError)


SECRET = "canary-e3b0c44298fc1c149afbf4c8"


@get("/boom")
async def boom() -> None:
    raise RuntimeError(f"internal detail {SECRET}")


@get("/missing")
async def missing() -> None:
    raise NotFoundError("Integration not found.")


@get("/conflict")
async def conflict() -> None:
    raise ConflictError("Only an active integration can be disabled.")


@get("/invalid")
async def invalid() -> None:
    raise ValidationError({"credentials.secret_key": ["The secret_key field is required."]})


@post("/echo")
async def echo(data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
    return data


@get("/typed")
async def typed(per_page: FromQuery[int]) -> int:
    return per_page


@pytest.fixture
async def client() -> Any:
    app = Litestar(
        [boom, missing, conflict, invalid, echo, typed],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=1024,
    )
    async with AsyncTestClient(app=app) as c:
        yield c


async def test_unexpected_error_is_a_bare_500(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    response = await client.get("/boom")
    assert response.status_code == 500
    assert response.json() == {"success": False, "message": "Server error.", "code": "server_error"}
    assert "Traceback" not in response.text and SECRET not in response.text


async def test_relaykit_errors_map_to_their_status(client: Any) -> None:
    assert (await client.get("/missing")).json() == {
        "success": False,
        "message": "Integration not found.",
        "code": "not_found",
    }
    conflict = await client.get("/conflict")
    assert conflict.status_code == 409 and conflict.json()["code"] == "conflict"
    invalid = await client.get("/invalid")
    assert invalid.status_code == 422
    assert invalid.json() == {
        "success": False,
        "message": "The given data was invalid.",
        "errors": {"credentials.secret_key": ["The secret_key field is required."]},
    }


async def test_malformed_json_is_400(client: Any) -> None:
    response = await client.post(
        "/echo", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_json"


async def test_oversized_body_is_413(client: Any) -> None:
    response = await client.post(
        "/echo", content=b"{" + b" " * 4096 + b"}", headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json() == {
        "success": False,
        "message": "The request body is too large.",
        "code": "payload_too_large",
    }


async def test_bad_query_parameter_is_422_keyed_by_field(client: Any) -> None:
    response = await client.get("/typed", params={"per_page": "many"})
    assert response.status_code == 422
    body = response.json()
    assert body["message"] == "The given data was invalid."
    assert list(body["errors"]) == ["per_page"]
