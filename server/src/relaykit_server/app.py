"""The Litestar app factory. Importing this module does no work; ``create_app`` builds the app
and its lifespan opens the database and loads the provider catalog."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import anyio
from litestar import Litestar, Router
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

import relaykit
from relaykit import logs
from relaykit.plugins import RelaykitPluginManager, get_plugin_manager
from relaykit.services import Services
from relaykit.settings import Settings
from relaykit_server import observability
from relaykit_server.auth import BearerTokenMiddleware
from relaykit_server.console import console_aware, console_routes, template_config
from relaykit_server.controllers.audit import AuditEventsController, IntegrationEventsController
from relaykit_server.controllers.integrations import IntegrationsController
from relaykit_server.controllers.providers import ProvidersController
from relaykit_server.controllers.routing import (
    DeliveryAttemptsController,
    OperationsController,
    RoutingRulesController,
)
from relaykit_server.controllers.service import health, ready
from relaykit_server.controllers.webhooks import (
    IntegrationWebhookController,
    WebhookEventsController,
    receive_webhook,
)
from relaykit_server.errors import EXCEPTION_HANDLERS
from relaykit_server.observability import metrics_endpoint
from relaykit_server.openapi import CompletedJson, complete_app_document

logger = logging.getLogger("relaykit.server")

API_PREFIX = "/api/v1"


def create_app(
    settings: Settings | None = None,
    *,
    plugin_manager: RelaykitPluginManager | None = None,
    shared_worker: bool = False,
) -> Litestar:
    """Build the relaykit API.

    Args:
        settings: defaults to :meth:`Settings.from_env`.
        plugin_manager: defaults to the process's manager, loaded from entry points; tests pass
            one built with ``make_plugin_manager(plugins=...)``.
        shared_worker: this app is one of the processes of ``relaykit serve --workers N``:
            its embedded worker runs only while the process holds the worker lock
            (relaykit.worker_lock); alone (the default) it always runs.
    """
    settings = settings or Settings.from_env()
    # every log record of the process passes the one redaction step and carries the
    # request's ids (relaykit.logs)
    logs.install()

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # A duplicate provider name among the plugins stops the start-up here.
        services = Services.open(
            settings, plugin_manager or get_plugin_manager(), shared_worker=shared_worker
        )
        app.state.services = services
        complete_app_document(app, services.catalog)
        try:
            async with anyio.create_task_group() as group:
                if services.worker is not None:
                    group.start_soon(services.run_worker)
                try:
                    yield
                finally:
                    await services.aclose()
            with anyio.CancelScope(shield=True):
                await services.close_connections()
        finally:
            services.dispose()

    api = Router(
        path=API_PREFIX,
        route_handlers=[
            ProvidersController,
            IntegrationsController,
            RoutingRulesController,
            OperationsController,
            DeliveryAttemptsController,
            WebhookEventsController,
            IntegrationWebhookController,
            AuditEventsController,
            IntegrationEventsController,
        ],
        middleware=[DefineMiddleware(BearerTokenMiddleware)],
        security=[{"bearer": []}],
    )
    app = Litestar(
        route_handlers=[api, health, ready, receive_webhook, metrics_endpoint, *console_routes()],
        template_config=template_config(),
        lifespan=[lifespan],
        # a console path answers with a page, an API path in the envelope
        exception_handlers={
            kind: console_aware(handler) for kind, handler in EXCEPTION_HANDLERS.items()
        },
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="relaykit",
            version=relaykit.__version__,
            path="/schema",
            render_plugins=[CompletedJson()],
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(
                        type="http", scheme="bearer", description="relaykit token"
                    )
                }
            ),
        ),
        # Litestar's logging middleware is deliberately absent: request bodies carry credentials.
        logging_config=None,
        debug=False,
    )
    # X-Request-ID, the request's log context, its metrics and access line: around the
    # whole app, unmatched paths included (relaykit_server.observability says why)
    return observability.install(app)
