"""What every controller needs from a request: the JSON body, paging parameters, the cached
GET, and the paginated response."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import msgspec
from litestar import MediaType, Request, Response

from relaykit.errors import ValidationError
from relaykit.pagination import DEFAULT_PER_PAGE, Page
from relaykit_server.auth import Principal
from relaykit_server.envelope import success
from relaykit_server.errors import MalformedBodyError
from relaykit_server.state import services_of

ApiRequest = Request[Principal, Any, Any]


async def read_json(request: ApiRequest) -> Any:
    """The body as JSON: 400 if it is not JSON, 422 if empty or nested past the decoder."""
    body = await request.body()
    if not body.strip():
        raise ValidationError({"body": ["The request body must be a JSON object."]})
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise MalformedBodyError("The request body is not valid JSON.") from None
    except RecursionError:
        raise ValidationError({"body": ["The request body is nested too deeply."]}) from None


async def cached_read(
    request: ApiRequest, build: Callable[[], Awaitable[Response[Any]]]
) -> Response[Any]:
    """A GET's response from ``build`` (reads only), reused byte for byte for the same
    tenant, path and query until the next commit to the database (the core's read cache:
    SQLite, RELAYKIT_READ_CACHE). Errors are raised, never kept."""
    services = services_of(request.app)
    if not services.read_cache:
        return await build()

    async def render() -> tuple[bytes, int]:
        response = await build()
        return msgspec.json.encode(response.content), response.status_code or 200

    key = ("response", request.user.tenant_id, request.scope["path"], request.scope["query_string"])
    body, status_code = await services.cached(key, render)
    return Response(body, status_code=status_code, media_type=MediaType.JSON)


def int_param(request: ApiRequest, name: str, default: int, errors: dict[str, list[str]]) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        errors[name] = [f"The {name} must be an integer."]
        return default


def paging(request: ApiRequest) -> tuple[int, int]:
    """``(page, per_page)`` from the query; a non-integer is a 422 keyed by the parameter."""
    errors: dict[str, list[str]] = {}
    page = int_param(request, "page", 1, errors)
    per_page = int_param(request, "per_page", DEFAULT_PER_PAGE, errors)
    if errors:
        raise ValidationError(errors)
    return page, per_page


def paginated(
    request: ApiRequest, page: Page[Any], base_path: str, filters: dict[str, str | None]
) -> Response[Any]:
    """The contract's list response: ``data``, ``meta`` and ``links``.

    The links keep the request's filters and ``per_page`` (when given), so following
    ``next`` stays in the same list.
    """
    kept = {key: value for key, value in filters.items() if value}
    if "per_page" in request.query_params:
        kept["per_page"] = str(page.per_page)

    def url(number: int) -> str:
        return f"{base_path}?{urlencode({**kept, 'page': number})}"

    last = page.last_page
    return success(
        page.items,
        meta={
            "current_page": page.page,
            "per_page": page.per_page,
            "total": page.total,
            "last_page": last,
        },
        links={
            "first": url(1),
            "last": url(last),
            "prev": url(page.page - 1) if 1 < page.page <= last + 1 else None,
            "next": url(page.page + 1) if page.page < last else None,
        },
    )
