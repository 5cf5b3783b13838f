"""The client's exceptions: every non-2xx answer of the API is one of these.

The class follows the status (:class:`NotFound` for a 404 …), except that a failed operation
(``run_operation`` answered with the operation in ``data``) is an :class:`OperationFailed`
whatever its status, and a 503 ``ledger_unavailable`` is a :class:`LedgerUnavailable`. The
body is decoded with the failure Structs of :mod:`relaykit.wire`; a body that is not the
API's envelope (a proxy's HTML page, an empty 502) still gives the class of its status, with
``code`` None and a message that says so.

Messages hold what the server said, never the request: the server does not echo
credentials, and the client adds none. Transport failures (no connection, a timeout) are
httpx's own exceptions (``httpx.TransportError``), raised as they are.
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from relaykit.wire import (
    ErrorBody,
    LedgerUnavailableBody,
    Operation,
    OperationFailureBody,
    ValidationErrorBody,
)

__all__ = [
    "ApiError",
    "Conflict",
    "InvalidRequest",
    "LedgerUnavailable",
    "NotFound",
    "OperationFailed",
    "PayloadTooLarge",
    "ServerError",
    "Unauthenticated",
    "UnexpectedResponse",
    "error_from_response",
]

LEDGER_UNAVAILABLE = "ledger_unavailable"


class ApiError(Exception):
    """A failure answer of the API.

    Attributes:
        status_code: the HTTP status.
        code: the body's machine-readable ``code`` (``not_found``, ``no_active_provider`` …);
            None on a 422 and on a body that is not the envelope.
        message: the body's ``message``, or what the client makes of a body it cannot read.
        errors: a 422's problems keyed by field (``credentials.auth_token``); else empty.
        body: the body as decoded JSON, or its text when it is not JSON.
        request_id: the response's ``X-Request-ID``, to quote when reporting a problem.
    """

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        code: str | None = None,
        errors: dict[str, list[str]] | None = None,
        body: Any = None,
        request_id: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.code = code
        self.message = message
        self.errors: dict[str, list[str]] = dict(errors or {})
        self.body = body
        self.request_id = request_id
        super().__init__(self._describe())

    def _describe(self) -> str:
        text = f"HTTP {self.status_code}"
        if self.code:
            text += f" {self.code}"
        text += f": {self.message}"
        for field, problems in self.errors.items():
            text += f"\n  {field}: {'; '.join(problems)}"
        return text


class Unauthenticated(ApiError):
    """401: no token, or one that is unknown or revoked."""


class NotFound(ApiError):
    """404: no such resource for this tenant (or no such route)."""


class Conflict(ApiError):
    """409: a transition the lifecycle does not allow, an ``Idempotency-Key`` in use …"""


class PayloadTooLarge(ApiError):
    """413: the request body is over the server's limit."""


class InvalidRequest(ApiError):
    """422: the request is invalid; ``errors`` says why, keyed by field."""


class ServerError(ApiError):
    """5xx: the server (or a proxy before it) failed."""


class LedgerUnavailable(ServerError):
    """503 ``ledger_unavailable``: an operation could not be recorded. ``operation_id`` names
    it when it was (``get_operation`` shows what was done); None when nothing was sent."""

    def __init__(self, *args: Any, operation_id: str | None = None, **kwargs: Any) -> None:
        self.operation_id = operation_id
        super().__init__(*args, **kwargs)


class OperationFailed(ApiError):
    """An operation that ran and did not succeed: ``operation`` is what was tried (its
    ``status``, ``error`` and ``attempts``). ``code`` says why: ``no_active_provider`` (409),
    ``provider_rejected`` (422), ``provider_unavailable`` or ``provider_outcome_unknown``
    (502), ``operation_outcome_unknown`` (409)."""

    def __init__(self, *args: Any, operation: Operation, **kwargs: Any) -> None:
        self.operation = operation
        super().__init__(*args, **kwargs)


class UnexpectedResponse(ApiError):
    """A 2xx answer whose body does not decode into the Struct the endpoint declares: the
    client and the server disagree on the contract (report it)."""

    @classmethod
    def of(cls, response: httpx.Response, expected: str, error: Exception) -> UnexpectedResponse:
        return cls(
            response.status_code,
            f"The response does not decode as {expected}: {error}",
            body=_raw(response),
            request_id=response.headers.get("x-request-id"),
        )


_BY_STATUS: dict[int, type[ApiError]] = {
    401: Unauthenticated,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidRequest,
}


def _class_of(status_code: int) -> type[ApiError]:
    if status_code >= 500:
        return ServerError
    return _BY_STATUS.get(status_code, ApiError)


def _raw(response: httpx.Response) -> Any:
    try:
        return msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        return response.text


def error_from_response(response: httpx.Response, *, operation: bool = False) -> ApiError:
    """The exception for a non-2xx ``response``; ``operation``: it answers ``run_operation``."""
    status = response.status_code
    raw = _raw(response)
    common: dict[str, Any] = {"body": raw, "request_id": response.headers.get("x-request-id")}
    cls = _class_of(status)
    if not (isinstance(raw, dict) and raw.get("success") is False and "message" in raw):
        kind = response.headers.get("content-type") or "no content type"
        return cls(
            status,
            f"The server answered HTTP {status} with a body that is not relaykit's JSON "
            f"envelope ({kind}, {len(response.content)} bytes): a proxy or another service "
            "may have answered.",
            **common,
        )
    content = response.content
    try:
        if "errors" in raw:
            invalid = msgspec.json.decode(content, type=ValidationErrorBody)
            return cls(status, invalid.message, errors=invalid.errors, **common)
        if raw.get("code") == LEDGER_UNAVAILABLE:
            ledger = msgspec.json.decode(content, type=LedgerUnavailableBody)
            ref = ledger.data
            operation_id = None if isinstance(ref, msgspec.UnsetType) else ref.id
            return LedgerUnavailable(
                status, ledger.message, code=ledger.code, operation_id=operation_id, **common
            )
        if operation and "data" in raw:
            failed = msgspec.json.decode(content, type=OperationFailureBody)
            return OperationFailed(
                status, failed.message, code=failed.code, operation=failed.data, **common
            )
        error = msgspec.json.decode(content, type=ErrorBody)
        return cls(status, error.message, code=error.code, **common)
    except msgspec.DecodeError as exc:
        code = raw.get("code")
        return cls(
            status,
            f"{raw['message']} (the error body does not match the contract: {exc})",
            code=code if isinstance(code, str) else None,
            **common,
        )
