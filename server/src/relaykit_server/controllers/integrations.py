"""``/api/v1/integrations``: the contract's integration endpoints.

Bodies are read raw and decoded here (not by Litestar's signature model) so that every
problem, of any field, comes back at once in the contract's 422 shape; the rules themselves
live in :mod:`relaykit.validation` and :mod:`relaykit.integrations`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlencode

import anyio.to_thread
import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.params import FromPath

from relaykit.errors import ValidationError
from relaykit.integrations import DEFAULT_PER_PAGE, IntegrationService, Page
from relaykit_server.auth import Principal
from relaykit_server.envelope import success
from relaykit_server.errors import MalformedBodyError
from relaykit_server.state import AppResources

T = TypeVar("T")
ApiRequest = Request[Principal, Any, Any]
BASE_PATH = "/api/v1/integrations"


async def read_json(request: ApiRequest) -> Any:
    body = await request.body()
    if not body.strip():
        raise ValidationError({"body": ["The request body must be a JSON object."]})
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise MalformedBodyError("The request body is not valid JSON.") from None
    except RecursionError:
        raise ValidationError({"body": ["The request body is nested too deeply."]}) from None


async def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


def service_of(request: ApiRequest) -> IntegrationService:
    return AppResources.of(request.app).integrations


def _int_param(request: ApiRequest, name: str, default: int, errors: dict[str, list[str]]) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        errors[name] = [f"The {name} must be an integer."]
        return default


def _links(page: Page, filters: dict[str, str]) -> dict[str, str | None]:
    def url(number: int) -> str:
        return f"{BASE_PATH}?{urlencode({**filters, 'page': number})}"

    last = page.last_page
    return {
        "first": url(1),
        "last": url(last),
        "prev": url(page.page - 1) if 1 < page.page <= last + 1 else None,
        "next": url(page.page + 1) if page.page < last else None,
    }


class IntegrationsController(Controller):
    path = "/integrations"
    tags = ["integrations"]

    @get("/", summary="List integrations")
    async def list_integrations(self, request: ApiRequest) -> Response[Any]:
        errors: dict[str, list[str]] = {}
        page_number = _int_param(request, "page", 1, errors)
        per_page = _int_param(request, "per_page", DEFAULT_PER_PAGE, errors)
        if errors:
            raise ValidationError(errors)
        status = request.query_params.get("status") or None
        category = request.query_params.get("category") or None
        page = await in_thread(
            service_of(request).list,
            request.user.tenant_id,
            status=status,
            category=category,
            page=page_number,
            per_page=per_page,
        )
        filters = {k: v for k, v in (("status", status), ("category", category)) if v}
        if "per_page" in request.query_params:
            filters["per_page"] = str(per_page)
        return success(
            page.items,
            meta={
                "current_page": page.page,
                "per_page": page.per_page,
                "total": page.total,
                "last_page": page.last_page,
            },
            links=_links(page, filters),
        )

    @post("/", summary="Configure an integration")
    async def create_integration(self, request: ApiRequest) -> Response[Any]:
        payload = await read_json(request)
        view = await in_thread(service_of(request).create, request.user.tenant_id, payload)
        return success(view, message="Integration configured successfully", status_code=201)

    @get("/{integration_id:str}", summary="Get integration details")
    async def get_integration(
        self, request: ApiRequest, integration_id: FromPath[str]
    ) -> Response[Any]:
        view = await in_thread(service_of(request).get, request.user.tenant_id, integration_id)
        return success(view)

    @patch("/{integration_id:str}", summary="Update an integration")
    async def update_integration(
        self, request: ApiRequest, integration_id: FromPath[str]
    ) -> Response[Any]:
        payload = await read_json(request)
        view = await in_thread(
            service_of(request).update, request.user.tenant_id, integration_id, payload
        )
        return success(view, message="Integration updated successfully")

    @delete("/{integration_id:str}", summary="Delete an integration", status_code=200)
    async def delete_integration(
        self, request: ApiRequest, integration_id: FromPath[str]
    ) -> Response[Any]:
        await in_thread(service_of(request).delete, request.user.tenant_id, integration_id)
        return success(message="Integration deleted successfully", include_data=False)

    @post("/{integration_id:str}/activate", summary="Activate an integration", status_code=200)
    async def activate_integration(
        self, request: ApiRequest, integration_id: FromPath[str]
    ) -> Response[Any]:
        view = await in_thread(service_of(request).activate, request.user.tenant_id, integration_id)
        return success(view, message="Integration activated successfully")

    @post("/{integration_id:str}/disable", summary="Disable an integration", status_code=200)
    async def disable_integration(
        self, request: ApiRequest, integration_id: FromPath[str]
    ) -> Response[Any]:
        view = await in_thread(service_of(request).disable, request.user.tenant_id, integration_id)
        return success(view, message="Integration disabled successfully")
