"""The resources the app owns for its lifetime, made in the lifespan, kept on ``app.state``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Litestar

from relaykit.catalog import Catalog
from relaykit.deliveries import DeliveryAttemptService
from relaykit.dispatch import Dispatcher
from relaykit.integrations import IntegrationService
from relaykit.routing import RoutingService
from relaykit.settings import Settings
from relaykit.storage.database import Database
from relaykit.worker import VerificationWorker


@dataclass(frozen=True, slots=True)
class AppResources:
    settings: Settings
    database: Database
    catalog: Catalog
    integrations: IntegrationService
    routing: RoutingService
    dispatcher: Dispatcher
    deliveries: DeliveryAttemptService
    worker: VerificationWorker | None
    #: Single-transaction service calls may run on the event loop (SQLite, and a key
    #: provider that does no network I/O: the calls seal and open credentials).
    inline_service_calls: bool = False

    @staticmethod
    def of(app: Litestar | Any) -> AppResources:
        resources = app.state.get("resources")
        if not isinstance(resources, AppResources):  # only before the lifespan ran
            raise RuntimeError("relaykit app used before its lifespan started")
        return resources
