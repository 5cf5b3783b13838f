"""What every request passes through to be observable: its request id, its context for
the logs, its metrics and one access line; and ``GET /metrics``.

:class:`RequestObservability` is a plain ASGI middleware that :func:`install` puts around
the app's ``asgi_handler`` (Litestar's router inside its exception handler). Litestar's
``middleware=`` runs only once a route has matched, so a 404 for an unknown path, a 405 or
a malformed host would go by it; Litestar calls ``asgi_handler`` for every HTTP request
(``Litestar.__call__``) and builds it once, in its constructor, so wrapping it after
construction sees every request and every response the app sends, 500s included (the
exception handler inside has already turned them into responses), while ``create_app`` still
returns the Litestar app itself. A ``before_send`` hook could add the header, but not time
the request nor hold the context variables for its whole length.

Per request it:

* takes ``X-Request-ID`` if it is 1-128 printable ASCII characters without spaces, else
  makes one (128 random bits in 32 hex digits, as a uuid4 without its dashes: a fifth of
  what a ULID costs to make, on every request), sets it in
  :data:`relaykit.context.REQUEST_ID` and adds it to the response's headers;
* restores the context variables when the request ends (the bearer middleware sets the
  actor, tenant and integration inside);
* counts the request by route template, method and status and observes its duration
  (:data:`relaykit.metrics.HTTP_REQUESTS`, :data:`~relaykit.metrics.HTTP_LATENCY`); a request
  no route matched (404, 405) has route ``unmatched``, so the label's values stay the
  app's route templates;
* logs one access line (logger ``relaykit.access``, INFO): method, path, status and
  duration, with the request id (uvicorn's own access log, which has no request id, is
  turned off by ``relaykit serve``).
"""

from __future__ import annotations

import logging
import time
from os import urandom
from typing import Any

import anyio.to_thread
from litestar import Litestar, Request, get
from litestar.enums import ScopeType
from litestar.response import Response
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from relaykit import metrics
from relaykit.context import ACTOR, INTEGRATION_ID, REQUEST_ID, TENANT_ID
from relaykit.logs import ACCESS_LOGGER
from relaykit_server.state import services_of

HEADER = b"x-request-id"
#: The longest incoming request id honoured.
MAX_REQUEST_ID_LENGTH = 128
#: The route label of a request no route matched.
UNMATCHED = "unmatched"
#: The method label's values: these, and :data:`OTHER_METHOD` for any other name a client
#: sends (so no request can add a series).
STANDARD_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")
)
OTHER_METHOD = "OTHER"

access_logger = logging.getLogger(ACCESS_LOGGER)


def incoming_request_id(scope: Scope) -> str | None:
    """The request's ``X-Request-ID`` if it is one to honour: 1 to 128 printable ASCII
    characters, no spaces."""
    for name, value in scope["headers"]:
        if name == HEADER:
            if 0 < len(value) <= MAX_REQUEST_ID_LENGTH and all(0x21 <= b <= 0x7E for b in value):
                return value.decode("ascii")
            return None
    return None


class _Children:
    """The metrics' labelled children by label values, made once each: ``labels()`` takes
    a lock and builds a tuple of strings on every call. One lookup finds both."""

    def __init__(self) -> None:
        self._made: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._made.get(key)
        if children is None:
            children = self._made[key] = (
                metrics.HTTP_REQUESTS.labels(route, method, status),
                metrics.HTTP_LATENCY.labels(route, method),
            )
        children[0].inc()
        children[1].observe(seconds)


class RequestObservability:
    """See the module's docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._children = _Children()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = incoming_request_id(scope) or urandom(16).hex()
        header = (HEADER, request_id.encode("ascii"))
        status = 500  # if nothing is sent at all (the client went away mid-request)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.get("headers")
                if type(headers) is list:  # Litestar makes a new list for every response
                    headers.append(header)
                else:
                    message["headers"] = [*(headers or ()), header]
            await send(message)

        request_token = REQUEST_ID.set(request_id)
        actor_token = ACTOR.set(ACTOR.get())
        tenant_token = TENANT_ID.set(None)
        integration_token = INTEGRATION_ID.set(None)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            method: str = scope.get("method", "")
            route = scope.get("path_template") or UNMATCHED
            # Any client can send any method name: the label takes the standard ones only.
            label = method if method in STANDARD_METHODS else OTHER_METHOD
            self._children.observe(route, label, status, seconds)
            if access_logger.isEnabledFor(logging.INFO):
                duration_ms = round(seconds * 1000, 3)
                access_logger.info(
                    "%s %s %d %.1fms",
                    method,
                    scope["path"],
                    status,
                    duration_ms,
                    extra={
                        "method": method,
                        "route": route,
                        "status": status,
                        "duration_ms": duration_ms,
                    },
                )
            INTEGRATION_ID.reset(integration_token)
            TENANT_ID.reset(tenant_token)
            ACTOR.reset(actor_token)
            REQUEST_ID.reset(request_token)


@get(
    "/metrics",
    include_in_schema=False,  # the Prometheus text format, not the JSON API
    media_type=metrics.CONTENT_TYPE,
)
async def metrics_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Every metric in the Prometheus text format; no token (keep it off the public
    network: docs/observability.md)."""
    queue = await services_of(request.app).verification_queue()
    # In multiprocess mode this reads every process's files: off the event loop.
    body = await anyio.to_thread.run_sync(metrics.render, [queue])
    return Response(body, media_type=metrics.CONTENT_TYPE)


def install(app: Litestar) -> Litestar:
    """Wrap ``app``'s handler of every HTTP request in :class:`RequestObservability`."""
    app.asgi_handler = RequestObservability(app.asgi_handler)
    return app
