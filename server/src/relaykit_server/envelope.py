"""The contract's response envelope, built in one place from :mod:`relaykit.wire`.

Success: ``{"success": true, "message": …, "data": …, "meta": {…}}`` (plus ``links`` on
paginated lists): each handler returns its envelope Struct (``IntegrationEnvelope`` …).
Failure: ``{"success": false, "message": …}`` with ``errors`` keyed by field on a 422,
exactly as the contract shows it, and a machine-readable ``code`` on every other error
(``unauthenticated``, ``not_found``, ``no_active_provider`` …). The statuses each operation
can answer, with these bodies, are declared once here for the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from litestar import Response
from litestar.openapi import ResponseSpec

from relaykit.wire import (
    ErrorBody,
    LedgerUnavailableBody,
    OperationRef,
    ValidationErrorBody,
)

VALIDATION_MESSAGE = "The given data was invalid."


def failure(
    status_code: int,
    message: str,
    *,
    code: str | None = None,
    errors: Mapping[str, Sequence[str]] | None = None,
    headers: Mapping[str, str] | None = None,
    data: Any = None,
) -> Response[Any]:
    body: msgspec.Struct | dict[str, Any]
    if errors is not None:
        body = ValidationErrorBody(
            message=message, errors={key: list(value) for key, value in errors.items()}
        )
    elif data is not None:  # a failed operation still shows what was tried
        body = {"success": False, "message": message, "code": code, "data": data}
    else:
        body = ErrorBody(message=message, code=code or "error")
    return Response(body, status_code=status_code, headers=dict(headers or {}))


def ledger_unavailable(message: str, code: str, operation_id: str | None) -> Response[Any]:
    data = OperationRef(operation_id) if operation_id is not None else msgspec.UNSET
    return Response(LedgerUnavailableBody(message=message, code=code, data=data), status_code=503)


def _error(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=ErrorBody, description=description)


#: What an operation of the API may answer besides its success, by the kind of request.
UNAUTHENTICATED = {401: _error("No valid bearer token (code `unauthenticated`).")}
NOT_FOUND = {404: _error("No such resource of the tenant's (code `not_found`).")}
INVALID = {
    422: ResponseSpec(
        data_container=ValidationErrorBody,
        description="The request was invalid: every problem, keyed by field.",
    )
}
WITH_BODY = {
    400: _error("The body is not JSON (code `malformed_json`)."),
    413: _error("The body is larger than RELAYKIT_MAX_BODY_BYTES (code `payload_too_large`)."),
    **INVALID,
}
CONFLICT = {409: _error("The request conflicts with the resource's state (code says which).")}
#: What a request that seals or opens stored credentials may answer when the key provider
#: cannot be used (the operator's fault; nothing was changed).
KEY_PROVIDER = {
    503: _error(
        "The key provider cannot seal or open credentials now (code "
        "`key_provider_unavailable`); nothing was changed, try again later."
    )
}


def responses(*groups: Mapping[int, ResponseSpec]) -> dict[int, ResponseSpec]:
    merged: dict[int, ResponseSpec] = dict(UNAUTHENTICATED)
    for group in groups:
        merged.update(group)
    return merged
