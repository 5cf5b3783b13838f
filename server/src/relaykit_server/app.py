"""The Litestar app factory. Importing this module does no work; ``create_app`` builds the app
and its lifespan opens the database and loads the provider catalog."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
from litestar import Litestar, Router, get
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

import relaykit
from relaykit import redaction
from relaykit.deliveries import DeliveryAttemptService
from relaykit.dispatch import Dispatcher
from relaykit.integrations import IntegrationService
from relaykit.keys import load_key_provider
from relaykit.plugins import RelaykitPluginManager, get_plugin_manager
from relaykit.routing import RoutingService
from relaykit.sealing import runs_in_process
from relaykit.settings import Settings
from relaykit.storage.database import open_database
from relaykit.worker import VerificationWorker
from relaykit_server.auth import BearerTokenMiddleware
from relaykit_server.controllers.integrations import IntegrationsController
from relaykit_server.controllers.providers import ProvidersController
from relaykit_server.controllers.routing import (
    DeliveryAttemptsController,
    OperationsController,
    RoutingRulesController,
)
from relaykit_server.envelope import success
from relaykit_server.errors import EXCEPTION_HANDLERS
from relaykit_server.state import AppResources

logger = logging.getLogger("relaykit.server")

API_PREFIX = "/api/v1"


@get("/health", exclude_from_auth=True, summary="Liveness", include_in_schema=False)
async def health() -> Any:
    return success({"status": "ok"}, message="OK")


def create_app(
    settings: Settings | None = None, *, plugin_manager: RelaykitPluginManager | None = None
) -> Litestar:
    """Build the relaykit API.

    Args:
        settings: defaults to :meth:`Settings.from_env`.
        plugin_manager: defaults to the process's manager, loaded from entry points; tests pass
            one built with ``make_plugin_manager(plugins=...)``.
    """
    settings = settings or Settings.from_env()
    redaction.install()  # every log record of the process passes the one redaction step

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pm = plugin_manager or get_plugin_manager()
        catalog = pm.catalog()  # a duplicate provider name stops the start-up here
        for error in catalog.errors:
            logger.warning(
                "plugin %s (%s) skipped: %s", error.plugin, error.distribution, error.error
            )
        database = open_database(settings)
        keyring = load_key_provider(settings, pm)
        worker = (
            VerificationWorker(settings, database, catalog, keyring)
            if settings.embedded_worker
            else None
        )
        routing = RoutingService(database, catalog)
        dispatcher = Dispatcher(settings, database, catalog, keyring, routing)
        app.state.resources = AppResources(
            settings=settings,
            database=database,
            catalog=catalog,
            integrations=IntegrationService(
                database, catalog, keyring, on_pending=worker.wake if worker else None
            ),
            routing=routing,
            dispatcher=dispatcher,
            deliveries=DeliveryAttemptService(database, catalog),
            worker=worker,
            inline_service_calls=database.inline_writes_allowed and runs_in_process(keyring),
        )
        logger.info(
            "relaykit started: %d providers (%s), database %s",
            len(catalog),
            ", ".join(catalog.names) or "none",
            database.url.render_as_string(hide_password=True),
        )
        try:
            async with anyio.create_task_group() as group:
                if worker is not None:
                    group.start_soon(worker.run)
                try:
                    yield
                finally:
                    if worker is not None:
                        worker.stop()
                    await dispatcher.aclose()
        finally:
            database.dispose()

    api = Router(
        path=API_PREFIX,
        route_handlers=[
            ProvidersController,
            IntegrationsController,
            RoutingRulesController,
            OperationsController,
            DeliveryAttemptsController,
        ],
        middleware=[DefineMiddleware(BearerTokenMiddleware)],
        security=[{"bearer": []}],
    )
    return Litestar(
        route_handlers=[api, health],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="relaykit",
            version=relaykit.__version__,
            path="/schema",
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
