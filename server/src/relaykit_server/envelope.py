"""The contract's response envelope, built in one place.

Success: ``{"success": true, "message": …, "data": …, "meta": {…}}`` (plus ``links`` on
paginated lists). Failure: ``{"success": false, "message": …}`` with ``errors`` keyed by field
on a 422, exactly as the contract shows it, and a machine-readable ``code`` on every other
error (``unauthenticated``, ``not_found``, ``no_active_provider`` …).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from litestar import Response

VALIDATION_MESSAGE = "The given data was invalid."


def success(
    data: Any = None,
    *,
    message: str | None = None,
    meta: Mapping[str, Any] | None = None,
    links: Mapping[str, Any] | None = None,
    status_code: int = 200,
    include_data: bool = True,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {"success": True}
    if message is not None:
        body["message"] = message
    if include_data:
        body["data"] = data
        body["meta"] = dict(meta or {})
    if links is not None:
        body["links"] = dict(links)
    return Response(body, status_code=status_code)


def failure(
    status_code: int,
    message: str,
    *,
    code: str | None = None,
    errors: Mapping[str, Sequence[str]] | None = None,
    headers: Mapping[str, str] | None = None,
    data: Any = None,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {"success": False, "message": message}
    if errors is not None:
        body["errors"] = {key: list(value) for key, value in errors.items()}
    elif code is not None:
        body["code"] = code
    if data is not None:  # a failed operation still shows what was tried
        body["data"] = data
    return Response(body, status_code=status_code, headers=dict(headers or {}))
