"""Inbound webhooks, relaykit's side: check a provider's webhook with the integration's own
secret, store its events once, and apply them to the delivery attempts they are about.

``POST /webhooks/{integration_id}`` lands in :meth:`WebhookIntake.receive`. In order:

1. The integration is looked up by id (live rows only: a deleted one receives nothing), its
   provider's :class:`~relaykit.webhooks.WebhookScheme` found, and its credentials opened
   (public ones and the unsealed sensitive ones, as a provider call gets them).
2. The scheme checks the signature and reads the body into events. Anything that is not a
   webhook to accept is one answer, :class:`WebhookRejectedError` (400): an unknown or
   deleted integration, a provider without a scheme, a secret not configured (Stripe
   without ``webhook_secret``), a bad or missing signature, a stale timestamp, a body the
   scheme does not expect, a plugin that failed. The same answer for all, so nobody learns
   which ids exist. Each is counted by reason (:attr:`WebhookIntake.rejected`) and in the
   ``relaykit_webhook_events_total`` metric (result ``rejected``, by provider), and logged at
   INFO with the reason alone: never the secret, the signature or the body.
3. One transaction stores each event unless the integration already holds its dedupe key
   (the unique constraint decides between concurrent deliveries), and for each newly stored
   event that names an object and a status, moves the integration's succeeded attempts that
   sent that object forward to it (:func:`relaykit.webhooks.moves_forward`, in the UPDATE's
   WHERE). A repeat is answered 2xx and changes nothing. An event about an object relaykit
   never sent is stored, not applied; one that arrives before its send's end is recorded is
   applied when it is (:mod:`relaykit.dispatch`).

A database failure is :class:`WebhookUnavailable` (503): the transaction rolled back, and the
provider delivers again. So is a key provider that cannot open the integration's credentials
(:class:`~relaykit.sealing.KeyUnavailable`, or any failure that is not the blob's: the
operator's fault, counted with result ``unavailable``): the provider retries once it is back.
Sealed credentials that fail authentication (:class:`~relaykit.sealing.CredentialsUnreadable`:
that integration's fault, it never opens until its secret is replaced) are a rejection like
any other (reason ``credentials_unusable``).

Opened credentials are kept in memory (at most :data:`OPENED_KEPT` integrations), keyed by
the sealed blob itself: a provider delivers many webhooks to one integration, and opening
the blob each time (a key unwrap, often a thread hop) was the largest cost of a delivery.
New credentials, a rewrap or a rotation change the blob, so a kept value is never stale; a
deleted integration is refused by the lookup before the cache is consulted.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import re
import sqlite3
from collections.abc import Mapping
from typing import Any

import msgspec
import sqlalchemy as sa

from relaykit.catalog import Catalog
from relaykit.dispatch import open_sealed
from relaykit.errors import NotFoundError, RelaykitError, ValidationError
from relaykit.ids import isoformat_z, new_id, utcnow
from relaykit.metrics import WEBHOOK_EVENTS
from relaykit.pagination import DEFAULT_PER_PAGE, Page, check_id, check_page, is_id
from relaykit.providers import Provider
from relaykit.sealing import CredentialsUnreadable, Keys, SealError
from relaykit.settings import Settings
from relaykit.storage import delivery_attempts as attempt_rows
from relaykit.storage import integrations as integration_rows
from relaykit.storage import webhook_events as event_rows
from relaykit.storage.database import Database, DatabaseError
from relaykit.webhooks import (
    WebhookContext,
    WebhookEvent,
    WebhookRejected,
    WebhookRequest,
    WebhookScheme,
)
from relaykit.wire import IntegrationWebhook

logger = logging.getLogger("relaykit.webhooks")

__all__ = ["Received", "WebhookIntake", "WebhookRejectedError", "WebhookUnavailable"]

#: Errors a database read or write can raise: SQLAlchemy's, and sqlite3's own from the raw
#: connections of :meth:`Database.fetch`.
_DATABASE_ERRORS = (DatabaseError, sqlite3.Error)
#: The longest value each stored field takes (the columns' lengths).
_LIMITS = {"dedupe_key": 255, "type": 255, "object_id": 255, "status": 32, "provider_code": 100}
#: Control characters (NUL among them, which PostgreSQL refuses in text).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: How many integrations' opened credentials the intake keeps.
OPENED_KEPT = 1024
#: The provider label of a webhook whose integration (or its provider) is not known.
UNKNOWN_PROVIDER = "unknown"


class WebhookRejectedError(RelaykitError):
    """The webhook is not accepted (400). One message for every reason: the answer must not
    tell an unknown integration from a bad signature."""

    code = "webhook_rejected"

    def __init__(self) -> None:
        super().__init__("The webhook was rejected.")


class WebhookUnavailable(RelaykitError):
    """relaykit could not record the webhook now (503): nothing was stored, and the provider
    delivers it again."""

    code = "webhook_unavailable"

    def __init__(self) -> None:
        super().__init__("The webhook could not be recorded now; deliver it again.")


class Received(msgspec.Struct, frozen=True):
    """What one delivery did: its events, how many moved an attempt, how many were repeats."""

    events: int
    applied: int
    duplicates: int


class _Target(msgspec.Struct, frozen=True):
    """An integration a webhook is addressed to, with its credentials opened."""

    integration_id: str
    tenant_id: str
    provider: Provider
    scheme: WebhookScheme
    credentials: dict[str, Any]


def event_view(row: Mapping[str, Any] | sa.RowMapping) -> dict[str, Any]:
    """A stored event as the API shows it."""
    return {
        "id": row["id"],
        "integration_id": row["integration_id"],
        "provider": row["provider"],
        "dedupe_key": row["dedupe_key"],
        "type": row["type"],
        "object_id": row["object_id"],
        "status": row["status"],
        "provider_code": row["provider_code"],
        "occurred_at": isoformat_z(row["occurred_at"]),
        "received_at": isoformat_z(row["received_at"]),
        "applied": bool(row["applied"]),
        "attempt_count": row["attempt_count"],
    }


class WebhookIntake:
    """The receiver and the stored events' reads (``GET /api/v1/webhook-events``)."""

    def __init__(
        self, settings: Settings, database: Database, catalog: Catalog, key_provider: Keys
    ) -> None:
        self.database = database
        self.catalog = catalog
        self.key_provider = key_provider
        self.tolerance = settings.webhook_tolerance
        self.public_base = settings.public_url.rstrip("/") if settings.public_url else None
        #: rejections since start, by reason (``unknown_integration``, ``signature`` …)
        self.rejected: collections.Counter[str] = collections.Counter()
        self._opened: collections.OrderedDict[tuple[str, bytes], dict[str, Any]] = (
            collections.OrderedDict()
        )

    # -- the receiver ----------------------------------------------------------------------------

    async def receive(
        self,
        integration_id: str,
        *,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> Received:
        """Check a webhook addressed to ``integration_id`` and record its events.

        Raises:
            WebhookRejectedError: it is not one to accept (the reason is logged, not said).
            WebhookUnavailable: the database failed; nothing was stored.
        """
        target = await self._target(integration_id)
        request = WebhookRequest(method=method, url=url, headers=headers, body=body)
        context = WebhookContext(now=utcnow(), tolerance=self.tolerance)
        try:
            found = target.scheme.receive(request, target.credentials, context)
        except WebhookRejected as exc:
            raise self._reject(
                "signature", integration_id, str(exc)[:200], provider=target.provider.name
            ) from None
        except Exception as exc:  # a plugin's bug must not become a 500, nor leak its message
            raise self._reject(
                "plugin_error", integration_id, type(exc).__name__, provider=target.provider.name
            ) from None
        events = _usable(found)
        if events is None:
            raise self._reject(
                "invalid_event", integration_id, target.provider.name, provider=target.provider.name
            )
        try:
            received: Received = await self.database.transaction(
                self._store, target, events, context.now
            )
        except _DATABASE_ERRORS as exc:
            logger.warning(
                "recording a webhook to integration %s failed: %s",
                integration_id,
                type(exc).__name__,
            )
            WEBHOOK_EVENTS.labels(target.provider.name, "unavailable").inc()
            raise WebhookUnavailable from None
        provider = target.provider.name
        if received.applied:
            WEBHOOK_EVENTS.labels(provider, "applied").inc(received.applied)
        if received.duplicates:
            WEBHOOK_EVENTS.labels(provider, "duplicate").inc(received.duplicates)
        stored = received.events - received.applied - received.duplicates
        if stored:
            WEBHOOK_EVENTS.labels(provider, "stored").inc(stored)
        logger.info(
            "webhook to integration %s (%s): %d events, %d applied, %d repeats",
            integration_id,
            target.provider.name,
            received.events,
            received.applied,
            received.duplicates,
        )
        return received

    async def _target(self, integration_id: str) -> _Target:
        try:
            found = await integration_rows.webhook_target(self.database, integration_id)
        except _DATABASE_ERRORS as exc:
            logger.warning("looking up a webhook's integration failed: %s", type(exc).__name__)
            WEBHOOK_EVENTS.labels(UNKNOWN_PROVIDER, "unavailable").inc()
            raise WebhookUnavailable from None
        if found is None:
            shown = integration_id if is_id(integration_id) else "(not an id)"
            raise self._reject("unknown_integration", shown)
        tenant_id, provider_name, public, sealed = found
        provider = self.catalog.get(provider_name)
        if provider is None or provider.webhooks is None:
            raise self._reject(
                "no_scheme",
                integration_id,
                provider_name,
                provider=provider_name if provider is not None else UNKNOWN_PROVIDER,
            )
        try:
            secrets = await self._open(tenant_id, integration_id, provider_name, sealed)
        except CredentialsUnreadable as exc:  # a blob that cannot open: it never will
            raise self._reject(
                "credentials_unusable", integration_id, type(exc).__name__, provider=provider_name
            ) from None
        except Exception as exc:  # the key provider cannot be used now (a KMS unreachable)
            logger.warning(
                "the key provider could not open the credentials of integration %s for a "
                "webhook (%s): answered 503, the provider delivers again",
                integration_id,
                _described(exc),
            )
            WEBHOOK_EVENTS.labels(provider_name, "unavailable").inc()
            raise WebhookUnavailable from None
        credentials = {**public, **secrets}
        if not _has_secrets(provider.webhooks, credentials):
            raise self._reject(
                "secret_not_configured", integration_id, provider_name, provider=provider_name
            )
        return _Target(integration_id, tenant_id, provider, provider.webhooks, credentials)

    async def _open(
        self, tenant_id: str, integration_id: str, provider: str, sealed: bytes | None
    ) -> dict[str, Any]:
        """The integration's sensitive credentials, opened once per sealed blob."""
        if not sealed:
            return {}
        key = (integration_id, sealed)
        opened = self._opened.get(key)
        if opened is None:
            opened = await open_sealed(
                self.key_provider, tenant_id, integration_id, provider, sealed
            )
            self._opened[key] = opened
            if len(self._opened) > OPENED_KEPT:
                self._opened.popitem(last=False)
        else:
            self._opened.move_to_end(key)
        return opened

    def _reject(
        self,
        reason: str,
        integration_id: str,
        detail: str = "",
        *,
        provider: str = UNKNOWN_PROVIDER,
    ) -> WebhookRejectedError:
        """Count and log a rejection (the reason, never the secret, signature or body)."""
        self.rejected[reason] += 1
        WEBHOOK_EVENTS.labels(provider, "rejected").inc()
        logger.info(
            "webhook to integration %s rejected: %s%s",
            integration_id,
            reason,
            f" ({detail})" if detail else "",
        )
        return WebhookRejectedError()

    def _store(
        self, conn: sa.Connection, target: _Target, events: list[WebhookEvent], now: dt.datetime
    ) -> Received:
        """Store each new event and apply it, in one transaction."""
        applied = duplicates = 0
        for event in events:
            event_id = new_id()
            values = {
                "id": event_id,
                "tenant_id": target.tenant_id,
                "integration_id": target.integration_id,
                "provider": target.provider.name,
                "dedupe_key": event.dedupe_key,
                "type": event.type,
                "object_id": event.object_id,
                "status": event.status,
                "provider_code": event.provider_code,
                "occurred_at": event.occurred_at,
                "received_at": now,
                "applied": False,
                "attempt_count": 0,
            }
            if not event_rows.insert_if_new(conn, values):
                duplicates += 1
                continue
            if event.object_id is None or event.status is None:
                continue
            moved = attempt_rows.move_delivery_status(
                conn, target.integration_id, event.object_id, event.status, now
            )
            if moved:
                event_rows.mark_applied(conn, event_id, moved)
                applied += 1
        return Received(events=len(events), applied=applied, duplicates=duplicates)

    # -- the API's reads ---------------------------------------------------------------------------

    def webhook_path(self, integration_id: str) -> str:
        return f"/webhooks/{integration_id}"

    async def describe(self, tenant_id: str, integration_id: str) -> IntegrationWebhook:
        """Where the tenant's integration receives webhooks (the URL to paste into the
        provider's dashboard), whether its provider sends any, and whether the secret their
        check needs is stored."""
        found = await integration_rows.webhook_target(self.database, integration_id, tenant_id)
        if found is None:
            raise NotFoundError("Integration not found.")
        _, provider_name, public, sealed = found
        provider = self.catalog.get(provider_name)
        scheme = provider.webhooks if provider is not None else None
        configured = False
        if scheme is not None:
            try:
                secrets = await open_sealed(
                    self.key_provider, tenant_id, integration_id, provider_name, sealed
                )
            except CredentialsUnreadable:
                # They never open until replaced: no webhook can be checked, so not configured.
                logger.warning(
                    "the stored credentials of integration %s cannot be opened", integration_id
                )
                secrets = {}
            # Anything else (KeyUnavailable) propagates: 503, whether the secret is
            # configured cannot be told now.
            configured = _has_secrets(scheme, {**public, **secrets})
        path = self.webhook_path(integration_id)
        return IntegrationWebhook(
            url=self.public_base + path if self.public_base is not None else None,
            path=path,
            receives_webhooks=scheme is not None,
            secret_configured=configured,
        )

    async def get(self, tenant_id: str, event_id: str) -> dict[str, Any]:
        row = (
            await self.database.read(event_rows.find, tenant_id, event_id)
            if is_id(event_id)
            else None
        )
        if row is None:
            raise NotFoundError("Webhook event not found.")
        return event_view(row)

    async def list(
        self,
        tenant_id: str,
        *,
        integration_id: str | None = None,
        type: str | None = None,
        applied: str | None = None,
        page: int = 1,
        per_page: int = DEFAULT_PER_PAGE,
    ) -> Page[dict[str, Any]]:
        """One page of the tenant's stored events, newest first. ``applied`` is the query's
        text, ``true`` or ``false``."""
        errors: dict[str, list[str]] = {}
        check_id("integration_id", integration_id, "an integration", errors)
        if type is not None and (len(type) > _LIMITS["type"] or _CONTROL.search(type)):
            errors["type"] = ["The type must be at most 255 characters, without control ones."]
        if applied is not None and applied not in ("true", "false"):
            errors["applied"] = ["The applied must be true or false."]
        check_page(page, per_page, errors)
        if errors:
            raise ValidationError(errors)
        return await self.database.read(
            lambda conn: event_rows.page_of(
                conn,
                tenant_id,
                integration_id=integration_id,
                type=type,
                applied=None if applied is None else applied == "true",
                page=page,
                per_page=per_page,
                view=event_view,
            )
        )


def _described(exc: BaseException) -> str:
    """What may be logged of an exception raised opening credentials: relaykit's own message
    for a SealError (it never holds key material), else the type alone (a key provider's
    text may quote key material or its request)."""
    name = type(exc).__name__
    return f"{name}: {exc}" if isinstance(exc, SealError) else name


def _has_secrets(scheme: WebhookScheme, credentials: Mapping[str, Any]) -> bool:
    return all(credentials.get(name) for name in scheme.secret_fields)


def _usable(found: Any) -> list[WebhookEvent] | None:
    """The events a scheme returned, fit to store (UTC times, values within the columns and
    free of control characters), or ``None`` if any is not: a plugin's mistake or a body
    crafted to break the insert must be a 400, not a 503 the provider retries forever."""
    if not isinstance(found, list | tuple):
        return None
    events: list[WebhookEvent] = []
    for event in found:
        if not isinstance(event, WebhookEvent):
            return None
        for name, limit in _LIMITS.items():
            value = getattr(event, name)
            if value is None and name not in ("dedupe_key", "type"):
                continue
            if not isinstance(value, str) or not 0 < len(value) <= limit or _CONTROL.search(value):
                return None
        occurred = event.occurred_at
        if occurred is not None:
            if not isinstance(occurred, dt.datetime):
                return None
            if occurred.tzinfo is None:  # a provider's time without a zone is UTC
                event = msgspec.structs.replace(event, occurred_at=occurred.replace(tzinfo=dt.UTC))
        events.append(event)
    return events
