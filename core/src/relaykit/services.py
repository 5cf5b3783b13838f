"""The services of one relaykit process, made once and shared: what the API server (and any
other front end) talks to. Nothing outside :mod:`relaykit.storage` touches the database;
nothing outside the core touches storage.

``Services.open(settings, plugin_manager)`` loads the catalog, opens (and migrates) the
database, loads the key providers, and makes the integration, routing, dispatch, delivery
and webhook services and, with ``RELAYKIT_EMBEDDED_WORKER`` on, a verification worker
(:meth:`Services.run_worker` runs it; in one of the processes of ``relaykit serve --workers
N`` only, :mod:`relaykit.worker_lock`); :meth:`Services.aclose` releases them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import TypeVar

import httpx

from relaykit import metrics, tenants
from relaykit.audit import AuditService
from relaykit.catalog import Catalog
from relaykit.deliveries import DeliveryAttemptService
from relaykit.dispatch import Dispatcher
from relaykit.integrations import IntegrationService
from relaykit.keys import custody, load_key_provider
from relaykit.keys.loading import KeySet
from relaykit.ledger import OperationService
from relaykit.plugins import RelaykitPluginManager
from relaykit.readiness import Readiness, ReadinessProbe
from relaykit.routing import RoutingService
from relaykit.sessions import ConsoleSessions
from relaykit.settings import Settings
from relaykit.storage.database import Database, open_database
from relaykit.webhook_intake import WebhookIntake
from relaykit.worker import VerificationWorker
from relaykit.worker_lock import RETRY_SECONDS, SharedWorker

T = TypeVar("T")

logger = logging.getLogger("relaykit.services")


class Services:
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        database: Database,
        key_provider: KeySet,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        shared_worker: bool = False,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self._database = database
        self.key_provider = key_provider
        self.worker = (
            VerificationWorker(settings, database, catalog, key_provider, transport=transport)
            if settings.embedded_worker
            else None
        )
        #: with ``shared_worker`` (one of ``serve``'s processes): the worker runs only while
        #: this process holds the home's worker lock, and is woken across processes
        self.shared_worker = (
            SharedWorker(
                self.worker,
                settings.home,
                retry=min(RETRY_SECONDS, settings.worker_heartbeat / 2),
            )
            if self.worker is not None and shared_worker
            else None
        )
        wake: Callable[[], None] | None = None
        worker_owner: str | Callable[[], str | None] | None = None
        if self.shared_worker is not None:  # whichever process holds the lock now
            wake, worker_owner = self.shared_worker.wake, self.shared_worker.heartbeat_owner
        elif self.worker is not None:
            wake, worker_owner = self.worker.wake, self.worker.owner
        self.integrations = IntegrationService(database, catalog, key_provider, on_pending=wake)
        self.routing = RoutingService(database, catalog)
        #: the audit trail's reads (its writes happen in each change's own transaction)
        self.audit = AuditService(database)
        self.dispatcher = Dispatcher(
            settings, database, catalog, key_provider, self.routing, transport=transport
        )
        self.deliveries = DeliveryAttemptService(database, catalog)
        self.operations = OperationService(database, catalog)
        self.webhooks = WebhookIntake(settings, database, catalog, key_provider)
        #: the console's signed-in browsers (relaykit.sessions)
        self.sessions = ConsoleSessions(database, settings.console_session_seconds)
        self._readiness = ReadinessProbe(
            database,
            key_provider,
            worker_owner=worker_owner,
            heartbeat_interval=settings.worker_heartbeat,
        )

    @classmethod
    def open(
        cls,
        settings: Settings,
        plugin_manager: RelaykitPluginManager,
        *,
        shared_worker: bool = False,
    ) -> Services:
        """Everything a process serving the API needs. A duplicate provider name among the
        plugins stops here (DuplicateProviderError); a broken plugin is logged and skipped.
        ``shared_worker``: this is one of several processes of one ``relaykit serve``, which
        run one embedded worker among them (relaykit.worker_lock)."""
        catalog = plugin_manager.catalog()
        for error in catalog.errors:
            logger.warning(
                "plugin %s (%s) skipped: %s", error.plugin, error.distribution, error.error
            )
        database = open_database(settings)
        try:
            key_provider = load_key_provider(settings, plugin_manager)
            custody.attach(key_provider, database, settings)
        except BaseException:
            database.dispose()
            raise
        logger.info(
            "relaykit started: %d providers (%s), database %s",
            len(catalog),
            ", ".join(catalog.names) or "none",
            database.describe(),
        )
        return cls(settings, catalog, database, key_provider, shared_worker=shared_worker)

    @staticmethod
    def check_start(settings: Settings, plugin_manager: RelaykitPluginManager) -> None:
        """The key-custody checks :meth:`open` makes, alone: ``relaykit serve`` runs them
        before the server starts, so a refusal (:class:`~relaykit.errors.ConfigurationError`
        saying what to restore) ends the command with its message, not a traceback from the
        server's lifespan."""
        database = open_database(settings)
        try:
            custody.attach(load_key_provider(settings, plugin_manager), database, settings)
        finally:
            database.dispose()

    async def readiness(self) -> Readiness:
        """Whether this process can do its work now, check by check (relaykit.readiness)."""
        return await self._readiness.run()

    async def authenticate(self, token: str | None) -> tenants.Caller | None:
        """The tenant a bearer token stands for and the token's id, or ``None`` (see
        :func:`tenants.authenticate`)."""
        return await tenants.authenticate(self._database, token)

    async def verification_queue(self) -> metrics.QueueCollector:
        """The verification queue's gauges for one ``/metrics`` scrape (one bounded read)."""
        return await metrics.read_queue(self._database)

    def request_scope(self) -> contextlib.AbstractContextManager[None]:
        """One snapshot check per request for :meth:`cached` (see storage.read_cache)."""
        return self._database.read_scope()

    async def cached(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> T:
        """``await compute()``, or its earlier result for ``key`` if nothing was committed to
        the database since, by anyone (SQLite with the read cache on; else always computed).
        ``compute`` must only read."""
        return await self._database.cached(key, compute)

    @property
    def read_cache(self) -> bool:
        """Whether :meth:`cached` keeps anything."""
        return self._database.read_cache

    async def run_worker(self) -> None:
        """Run the embedded worker until :meth:`aclose` (the server's lifespan starts it):
        shared, while this process holds the worker lock; else at once. Nothing to run with
        ``RELAYKIT_EMBEDDED_WORKER`` off."""
        if self.shared_worker is not None:
            await self.shared_worker.run()
        elif self.worker is not None:
            await self.worker.run()

    async def aclose(self) -> None:
        if self.shared_worker is not None:
            self.shared_worker.stop()
        elif self.worker is not None:
            self.worker.stop()
        await self.dispatcher.aclose()

    async def close_connections(self) -> None:
        """Close the database connections that belong to this event loop (PostgreSQL's
        write pool), after the worker has stopped and before :meth:`dispose`."""
        await self._database.close_async()

    def dispose(self) -> None:
        """Close the database (after the worker has stopped)."""
        if self.shared_worker is not None:
            self.shared_worker.close()
        self._database.dispose()
