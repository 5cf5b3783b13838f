"""The service's own state, outside ``/api/v1`` and with no token: ``GET /health`` (liveness:
the process answers) and ``GET /ready`` (readiness: it can do its work; relaykit.readiness).

``/health`` touches nothing but the event loop, so a load balancer or a liveness probe may
call it as often as it likes; ``/ready`` runs the four checks (a few milliseconds, one
database round trip each, and one wrap and one unwrap by the key provider).
"""

from __future__ import annotations

from typing import Any, Literal, cast

import msgspec
from litestar import Request, Response, get
from litestar.openapi import ResponseSpec

from relaykit.readiness import Readiness
from relaykit.wire import NoMeta
from relaykit_server.state import services_of


class Liveness(msgspec.Struct, frozen=True):
    status: str


class HealthEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    success: Literal[True] = True
    message: str
    data: Liveness
    meta: NoMeta = NoMeta()


class ReadyEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    """``/ready``'s 200: every check passed."""

    success: Literal[True] = True
    message: str
    data: Readiness
    meta: NoMeta = NoMeta()


class NotReadyBody(msgspec.Struct, frozen=True, kw_only=True):
    """``/ready``'s 503: ``message`` names the failing checks (``Not ready: worker``), and
    ``data`` holds every check with the failing ones' ``error``."""

    success: Literal[False] = False
    message: str
    code: Literal["not_ready"] = "not_ready"
    data: Readiness


@get("/health", summary="Liveness: the process answers", tags=["service"], operation_id="health")
async def health() -> HealthEnvelope:
    return HealthEnvelope(message="OK", data=Liveness("ok"))


@get(
    "/ready",
    summary="Readiness: database, schema, key provider and worker heartbeat all usable",
    description="200 when every check passes; 503 with the failing checks named in "
    "`message` and each check's `ok` (and `error` when it failed) in `data.checks`. No "
    "token needed; no tenant data or secret in the answer. For load balancers and "
    "Kubernetes readiness probes (docs/deployment.md).",
    tags=["service"],
    operation_id="ready",
    responses={
        503: ResponseSpec(
            data_container=NotReadyBody,
            description="At least one check failed (code `not_ready`).",
        )
    },
)
async def ready(request: Request[Any, Any, Any]) -> Response[ReadyEnvelope]:
    report = await services_of(request.app).readiness()
    headers = {"Cache-Control": "no-store"}
    if report.ready:
        return Response(ReadyEnvelope(message="Ready", data=report), headers=headers)
    body = NotReadyBody(message=f"Not ready: {', '.join(report.failing)}", data=report)
    # The 503 and its body are declared in ``responses`` above.
    return cast("Response[ReadyEnvelope]", Response(body, status_code=503, headers=headers))
