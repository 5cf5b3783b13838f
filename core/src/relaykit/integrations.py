"""Integrations: create, read, list, update, delete, activate, disable.

The service is synchronous and does each request's work in one database transaction; async
callers run a method in a worker thread (one hop per request). It is the only place that
turns requests into rows: validation (:mod:`relaykit.validation`), sealing
(:mod:`relaykit.sealing`) and status moves (:mod:`relaykit.lifecycle`) meet here.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import msgspec
import sqlalchemy as sa

from relaykit.catalog import Catalog
from relaykit.errors import NotFoundError, ValidationError
from relaykit.ids import isoformat_z, new_id, utcnow
from relaykit.lifecycle import Action, Status, next_status
from relaykit.pagination import DEFAULT_PER_PAGE, Page, check_choice, check_page, select_page
from relaykit.providers import STANDARD_CATEGORIES, Provider
from relaykit.sealing import KeyProvider, SealContext, open_credentials, seal_credentials
from relaykit.storage import integrations as rows
from relaykit.storage.database import Database
from relaykit.storage.models import integrations
from relaykit.validation import (
    RESERVED_METADATA_KEY,
    split_credentials,
    validate_create,
    validate_update,
)

logger = logging.getLogger("relaykit.integrations")

DUPLICATE_MESSAGE = "An integration for this provider already exists."
NOT_FOUND_MESSAGE = "Integration not found."


#: What :meth:`IntegrationService.view` reads (not the sealed blob, not the worker's lease).
VIEW_COLUMNS = [
    integrations.c[name]
    for name in (
        "id",
        "provider",
        "category",
        "status",
        "enabled_capabilities",
        "public_credentials",
        "metadata",
        "verification",
        "verified_at",
        "created_at",
        "updated_at",
    )
]


class IntegrationView(msgspec.Struct, frozen=True):
    """An integration as the API shows it: sensitive credential fields always null."""

    id: str
    provider: str
    display_name: str
    category: str
    status: str
    enabled_capabilities: list[str]
    credentials: dict[str, Any]
    metadata: dict[str, Any]
    verified_at: str | None
    created_at: str
    updated_at: str


class IntegrationService:
    def __init__(
        self,
        database: Database,
        catalog: Catalog,
        key_provider: KeyProvider,
        *,
        on_pending: Callable[[], None] | None = None,
    ) -> None:
        self.database = database
        self.catalog = catalog
        self.key_provider = key_provider
        # Called after a commit that leaves a row due for verification (wakes the worker).
        self._on_pending = on_pending or (lambda: None)

    # -- reads ---------------------------------------------------------------------------------

    def get(self, tenant_id: str, integration_id: str) -> IntegrationView:
        return self.database.read(
            lambda conn: self.view(self._row(conn, tenant_id, integration_id))
        )

    def list(
        self,
        tenant_id: str,
        *,
        status: str | None = None,
        category: str | None = None,
        page: int = 1,
        per_page: int = DEFAULT_PER_PAGE,
    ) -> Page[IntegrationView]:
        self._check_filters(status, category, page, per_page)

        conditions = [integrations.c.tenant_id == tenant_id, integrations.c.deleted_at.is_(None)]
        if status is not None:
            conditions.append(integrations.c.status == status)
        if category is not None:
            conditions.append(integrations.c.category == category)
        return self.database.read(
            lambda conn: select_page(
                conn,
                integrations,
                conditions,
                page=page,
                per_page=per_page,
                view=self.view,
                columns=VIEW_COLUMNS,
            )
        )

    def _check_filters(
        self, status: str | None, category: str | None, page: int, per_page: int
    ) -> None:
        errors: dict[str, list[str]] = {}
        check_choice("status", status, [s.value for s in Status], errors)
        categories = sorted({*STANDARD_CATEGORIES, *(p.category for p in self.catalog)})
        check_choice("category", category, categories, errors)
        check_page(page, per_page, errors)
        if errors:
            raise ValidationError(errors)

    # -- writes --------------------------------------------------------------------------------

    def create(self, tenant_id: str, payload: Any) -> IntegrationView:
        request = validate_create(payload, self.catalog)
        integration_id = new_id()
        now = utcnow()
        context = SealContext(tenant_id, integration_id, request.provider.name)
        sealed = (
            seal_credentials(request.secret, context, self.key_provider) if request.secret else None
        )
        values = {
            "id": integration_id,
            "tenant_id": tenant_id,
            "provider": request.provider.name,
            "category": request.provider.category,
            "status": Status.PENDING_VERIFY.value,
            "enabled_capabilities": request.enabled_capabilities,
            "public_credentials": request.public,
            "sealed_credentials": sealed,
            "credentials_version": 1,
            "metadata": request.metadata,
            "verification": None,
            "verify_attempts": 0,
            "next_verify_at": now,
            "verified_at": None,
            "created_at": now,
            "updated_at": now,
            "deleted_at": None,
        }

        def insert(conn: sa.Connection) -> sa.Row[Any]:
            # The unique index is the guarantee; this check only gives the common case a
            # clean answer without relying on the driver's error.
            if rows.exists_for_provider(conn, tenant_id, request.provider.name):
                raise ValidationError({"provider": [DUPLICATE_MESSAGE]})
            rows.insert(conn, values)
            return self._row(conn, tenant_id, integration_id)

        try:
            row = self.database.write(insert)
        except sa.exc.IntegrityError:
            # Lost a race with a concurrent create (PostgreSQL, or another process).
            raise ValidationError({"provider": [DUPLICATE_MESSAGE]}) from None
        logger.info(
            "integration %s created for tenant %s (provider %s, fields %s)",
            integration_id,
            tenant_id,
            request.provider.name,
            ",".join(sorted({*request.public, *request.secret})),
        )
        self._on_pending()
        return self.view(row)

    def update(self, tenant_id: str, integration_id: str, payload: Any) -> IntegrationView:
        queued = False

        def apply(conn: sa.Connection) -> sa.Row[Any]:
            nonlocal queued
            row = self._row(conn, tenant_id, integration_id)
            provider = self._provider(row.provider)
            request = validate_update(payload, provider)
            now = utcnow()
            values: dict[str, Any] = {}
            if request.enabled_capabilities is not None:
                values["enabled_capabilities"] = request.enabled_capabilities
            if request.metadata is not None:
                values["metadata"] = request.metadata
            if request.credentials:
                values.update(self._credential_changes(row, provider, request.credentials, now))
                queued = values.get("status") == Status.PENDING_VERIFY.value
            if values:
                values["updated_at"] = now
                rows.update(conn, row.id, values)
            logger.info(
                "integration %s updated (%s)",
                row.id,
                ",".join(sorted(k for k in values if k != "updated_at")) or "no change",
            )
            return self._row(conn, tenant_id, integration_id)

        row = self.database.write(apply)
        if queued:
            self._on_pending()
        return self.view(row)

    def _credential_changes(
        self, row: sa.Row[Any], provider: Provider, sent: dict[str, Any], now: dt.datetime
    ) -> dict[str, Any]:
        """New credential columns for ``sent`` merged over the stored values.

        Fields not sent keep their stored values; an optional field sent as null is removed.
        Changed values re-seal (a new data key) and queue a new verification. Values equal
        to the stored ones change nothing, except for an integration in ``error``: the
        contract tells tenants to PATCH the credentials to verify again, so that does.
        """
        context = SealContext(row.tenant_id, row.id, row.provider)
        stored_secret = (
            open_credentials(row.sealed_credentials, context, self.key_provider)
            if row.sealed_credentials
            else {}
        )
        sent_public, sent_secret = split_credentials(provider, sent)
        public = {**row.public_credentials, **sent_public}
        secret = {**stored_secret, **sent_secret}
        public = {k: v for k, v in public.items() if v is not None}
        secret = {k: v for k, v in secret.items() if v is not None}
        changed = public != row.public_credentials or secret != stored_secret
        if not changed and row.status != Status.ERROR.value:
            return {}
        return {
            "public_credentials": public,
            "sealed_credentials": seal_credentials(secret, context, self.key_provider)
            if secret
            else None,
            "credentials_version": row.credentials_version + 1,
            "status": next_status(Action.CREDENTIALS_CHANGED, row.status).value,
            "verified_at": None,
            "verification": None,
            "verify_attempts": 0,
            "next_verify_at": now,
            "lease_owner": None,
            "lease_expires_at": None,
        }

    def delete(self, tenant_id: str, integration_id: str) -> None:
        def soft_delete(conn: sa.Connection) -> None:
            row = self._row(conn, tenant_id, integration_id)
            now = utcnow()
            rows.update(conn, row.id, {"deleted_at": now, "updated_at": now, "lease_owner": None})

        self.database.write(soft_delete)

    def activate(self, tenant_id: str, integration_id: str) -> IntegrationView:
        return self._move(tenant_id, integration_id, Action.ACTIVATE)

    def disable(self, tenant_id: str, integration_id: str) -> IntegrationView:
        return self._move(tenant_id, integration_id, Action.DISABLE)

    def _move(self, tenant_id: str, integration_id: str, action: Action) -> IntegrationView:
        def apply(conn: sa.Connection) -> sa.Row[Any]:
            row = self._row(conn, tenant_id, integration_id)
            status = next_status(action, row.status)
            rows.update(conn, row.id, {"status": status.value, "updated_at": utcnow()})
            logger.info("integration %s: %s, %s -> %s", row.id, action, row.status, status)
            return self._row(conn, tenant_id, integration_id)

        return self.view(self.database.write(apply))

    # -- helpers -------------------------------------------------------------------------------

    def _row(self, conn: sa.Connection, tenant_id: str, integration_id: str) -> sa.Row[Any]:
        row = rows.find(conn, tenant_id, integration_id)
        if row is None:
            raise NotFoundError(NOT_FOUND_MESSAGE)
        return row

    def _provider(self, name: str) -> Provider:
        provider = self.catalog.get(name)
        if provider is None:
            raise ValidationError(
                {"provider": [f"The provider {name} is no longer installed; reinstall its plugin."]}
            )
        return provider

    def view(self, row: sa.Row[Any]) -> IntegrationView:
        provider = self.catalog.get(row.provider)
        public = row.public_credentials or {}
        if provider is not None:
            credentials = {
                name: (None if spec.sensitive else public.get(name))
                for name, spec in provider.credential_schema.items()
            }
        else:  # plugin uninstalled: show what is public, never anything sealed
            credentials = dict(public)
        metadata = dict(row.metadata or {})
        if row.verification:
            metadata[RESERVED_METADATA_KEY] = row.verification
        return IntegrationView(
            id=row.id,
            provider=row.provider,
            display_name=provider.display_name if provider else row.provider,
            category=row.category,
            status=row.status,
            enabled_capabilities=list(row.enabled_capabilities),
            credentials=credentials,
            metadata=metadata,
            verified_at=isoformat_z(row.verified_at),
            created_at=isoformat_z(row.created_at) or "",
            updated_at=isoformat_z(row.updated_at) or "",
        )
