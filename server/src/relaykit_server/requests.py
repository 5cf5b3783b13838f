"""What every controller needs from a request: the cached GET, the list's ``meta`` and
``links``, the paging parameters, a body whose type the path decides."""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import msgspec
from litestar import MediaType, Request, Response

from relaykit.pagination import Page
from relaykit.wire import PageLinks, PageMeta
from relaykit_server.auth import Principal
from relaykit_server.body import decode_object
from relaykit_server.state import services_of

ApiRequest = Request[Principal, Any, Any]


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


def page_parts(
    request: ApiRequest, page: Page[Any], base_path: str, filters: dict[str, str | None]
) -> tuple[PageMeta, PageLinks]:
    """The ``meta`` and ``links`` of the contract's list response.

    The links keep the request's filters and ``per_page`` (when given), so following
    ``next`` stays in the same list.
    """
    kept = tuple((key, value) for key, value in filters.items() if value)
    if "per_page" in request.query_params:
        kept += (("per_page", str(page.per_page)),)
    return _page_parts(base_path, kept, page.page, page.per_page, page.total)


@functools.lru_cache(maxsize=1024)
def _page_parts(
    base_path: str, kept: tuple[tuple[str, str], ...], number: int, per_page: int, total: int
) -> tuple[PageMeta, PageLinks]:
    """:func:`page_parts` of plain values, kept: the same list asked again (the usual case)
    builds no URLs (about 4 % of an uncached list's time)."""

    def url(at: int) -> str:
        return f"{base_path}?{urlencode({**dict(kept), 'page': at})}"

    last = max(1, math.ceil(total / per_page))
    meta = PageMeta(current_page=number, per_page=per_page, total=total, last_page=last)
    links = PageLinks(
        first=url(1),
        last=url(last),
        prev=url(number - 1) if 1 < number <= last + 1 else None,
        next=url(number + 1) if number < last else None,
    )
    return meta, links


async def read_json(request: ApiRequest) -> Any:
    """The body as plain JSON (for a body whose type the path decides): 400 if it is not
    JSON, 422 if empty, not an object, or nested past the decoder."""
    return decode_object(await request.body())
