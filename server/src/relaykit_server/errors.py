"""One mapping from every error to the contract's envelope.

Nothing raised inside the app reaches a client as a stack trace: relaykit's own errors map to
their status, Litestar's HTTP errors keep their status with a plain message, and anything
else is logged (type and traceback, server side only) and answered as a bare 500.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from relaykit.dispatch import LedgerUnavailable
from relaykit.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    RelaykitError,
    ValidationError,
)
from relaykit.integrations import CREDENTIALS_UNREADABLE_MESSAGE
from relaykit.sealing import CredentialsUnreadable, KeyUnavailable
from relaykit.webhook_intake import WebhookRejectedError, WebhookUnavailable
from relaykit_server.envelope import VALIDATION_MESSAGE, failure, ledger_unavailable

logger = logging.getLogger("relaykit.server")


#: The query parameters Litestar parses as integers (relaykit_server.params).
INTEGER_PARAMETERS = frozenset({"page", "per_page"})


class MalformedBodyError(RelaykitError):
    """The request body is not JSON at all (a 400, unlike a well-formed but invalid body)."""


_HTTP_MESSAGES = {
    400: ("bad_request", "The request could not be understood."),
    401: ("unauthenticated", "Unauthenticated."),
    403: ("forbidden", "This action is not allowed."),
    404: ("not_found", "Not found."),
    405: ("method_not_allowed", "Method not allowed."),
    413: ("payload_too_large", "The request body is too large."),
    415: ("unsupported_media_type", "The request body must be application/json."),
}


def _validation_errors(exc: ValidationException) -> dict[str, list[str]]:
    """Litestar's parameter errors keyed by parameter, in relaykit's words: the only typed
    parameters Litestar parses are the lists' integer ``page`` and ``per_page`` (bodies are
    decoded by relaykit_server.body), so its message text is never passed on."""
    errors: dict[str, list[str]] = {}
    extra = exc.extra if isinstance(exc.extra, list) else []
    for item in extra:
        if not isinstance(item, dict):
            continue
        key = str(item.get("key") or "")
        if key == "data" or item.get("source") == "body":
            # Only an empty body gets past relaykit_server.body to here.
            errors.setdefault("body", []).append("The request body must be a JSON object.")
        elif key in INTEGER_PARAMETERS:
            errors.setdefault(key, []).append(f"The {key} must be an integer.")
        elif key:
            errors.setdefault(key, []).append(f"The {key} is invalid.")
    return errors


KEY_PROVIDER_UNAVAILABLE = (
    "Stored credentials cannot be sealed or opened now: the key provider is unavailable. "
    "Nothing was changed; try again later."
)
#: The 409 of a request that needs an integration's stored credentials when they fail
#: authentication (a PATCH that does not replace every sensitive field).
CREDENTIALS_UNREADABLE = CREDENTIALS_UNREADABLE_MESSAGE


def handle_relaykit_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, ValidationError):
        return failure(422, exc.message, errors=exc.errors)
    if isinstance(exc, MalformedBodyError):
        return failure(400, str(exc), code="malformed_json")
    if isinstance(exc, NotFoundError):
        return failure(404, str(exc) or "Not found.", code="not_found")
    if isinstance(exc, ConflictError):
        return failure(409, str(exc), code=exc.code)
    if isinstance(exc, LedgerUnavailable):
        return ledger_unavailable(str(exc), exc.code, exc.operation_id)
    if isinstance(exc, WebhookRejectedError):
        return failure(400, str(exc), code=exc.code)
    if isinstance(exc, WebhookUnavailable):
        return failure(503, str(exc), code=exc.code)
    if isinstance(exc, KeyUnavailable):
        # The operator's fault (docs/security.md): the key provider's own words stay in
        # the log, which the key set wrote when it counted the failure.
        logger.warning("key provider unavailable on %s: %s", request.url.path, exc)
        return failure(503, KEY_PROVIDER_UNAVAILABLE, code="key_provider_unavailable")
    if isinstance(exc, CredentialsUnreadable):
        return failure(409, CREDENTIALS_UNREADABLE, code="credentials_unreadable")
    if isinstance(exc, AuthenticationError):
        return failure(
            401, "Unauthenticated.", code="unauthenticated", headers={"WWW-Authenticate": "Bearer"}
        )
    logger.error("unhandled relaykit error %s on %s", type(exc).__name__, request.url.path)
    return failure(500, "Server error.", code="server_error")


def handle_http_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    assert isinstance(exc, HTTPException)
    if isinstance(exc, ValidationException):
        return failure(
            422,
            VALIDATION_MESSAGE,
            errors=_validation_errors(exc) or {"body": ["The request is invalid."]},
        )
    status = exc.status_code
    if status == 400 and str(exc.detail).startswith("JSON is malformed"):
        return failure(400, "The request body is not valid JSON.", code="malformed_json")
    if status >= 500:
        logger.error("HTTP %s on %s: %s", status, request.url.path, exc.detail)
        return failure(status, "Server error.", code="server_error")
    code, message = _HTTP_MESSAGES.get(status, ("error", "The request failed."))
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return failure(status, message, code=code, headers=headers)


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    # The traceback stays in the server log; the client learns nothing about internals.
    logger.exception("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
    return failure(HTTP_500_INTERNAL_SERVER_ERROR, "Server error.", code="server_error")


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    RelaykitError: handle_relaykit_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
