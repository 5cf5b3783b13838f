"""What the code running now is doing, and for whom: the request id, the actor, the tenant
and the integration, as context variables.

The API server sets them per request (the request id from ``X-Request-ID`` or a new one,
the actor and tenant from the bearer token, the integration from the path), the worker sets
``actor="worker"`` and the integration it checks, the CLI leaves the actor at ``cli``.
Log records carry them (:mod:`relaykit.logs`) and audit events record them
(:mod:`relaykit.audit`). Context variables follow the code into tasks and into the threads
``anyio.to_thread.run_sync`` starts, so a unit of work sees its request's values wherever the
database layer runs it.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

#: The actor of code no request or worker runs: the command line.
CLI_ACTOR = "cli"
#: The actor of the verification worker (and of the ledger's sweeps).
WORKER_ACTOR = "worker"

REQUEST_ID: ContextVar[str | None] = ContextVar("relaykit_request_id", default=None)
#: the token id of the request's bearer token, :data:`WORKER_ACTOR` or :data:`CLI_ACTOR`
ACTOR: ContextVar[str] = ContextVar("relaykit_actor", default=CLI_ACTOR)
TENANT_ID: ContextVar[str | None] = ContextVar("relaykit_tenant_id", default=None)
INTEGRATION_ID: ContextVar[str | None] = ContextVar("relaykit_integration_id", default=None)


@contextlib.contextmanager
def bound(
    *,
    request_id: str | None = None,
    actor: str | None = None,
    tenant_id: str | None = None,
    integration_id: str | None = None,
) -> Iterator[None]:
    """Set the given values (``None``: leave as is) for the ``with`` block, then restore."""
    resets: list[Callable[[], None]] = []
    variables: tuple[tuple[ContextVar[Any], str | None], ...] = (
        (REQUEST_ID, request_id),
        (ACTOR, actor),
        (TENANT_ID, tenant_id),
        (INTEGRATION_ID, integration_id),
    )
    for variable, value in variables:
        if value is not None:
            resets.append(functools.partial(variable.reset, variable.set(value)))
    try:
        yield
    finally:
        for reset in reversed(resets):
            reset()


def current() -> dict[str, str | None]:
    """The values set now (for a log line): request id, actor, tenant, integration."""
    return {
        "request_id": REQUEST_ID.get(),
        "actor": ACTOR.get(),
        "tenant_id": TENANT_ID.get(),
        "integration_id": INTEGRATION_ID.get(),
    }
