"""Integrations: create, read, list, update, delete, activate, disable.

The service is the only place that turns the API's requests into integration rows:
validation (:mod:`relaykit.validation`), sealing (:mod:`relaykit.sealing`) and status moves
(:mod:`relaykit.lifecycle`) meet here; the statements are in
:mod:`relaykit.storage.integrations`. Sealing and opening credentials happen outside any
database transaction (a key provider may be a network service), so a PATCH of credentials
reads the row, seals, and writes only if the row still holds the credentials it read;
if a concurrent write got there first it starts again (:meth:`IntegrationService.update`).

Every change that sticks appends its audit event (:mod:`relaykit.audit`) in the same
transaction: created, credentials replaced (the field names), updated (which fields),
activated, disabled, deleted. A PATCH that changes nothing records nothing.

A PATCH of credentials that sends every sensitive field the provider declares replaces the
sealed blob without needing the old one (it is opened only to compare, when it can be):
stored credentials that cannot be opened (a lost key, an altered blob) are replaced that
way. One that would need the old blob and cannot
open it raises :class:`~relaykit.sealing.CredentialsUnreadable` (409
``credentials_unreadable``: send every sensitive field) or
:class:`~relaykit.sealing.KeyUnavailable` (503 ``key_provider_unavailable``); nothing changes.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import sqlalchemy as sa

from relaykit import audit
from relaykit.catalog import Catalog
from relaykit.errors import ConflictError, NotFoundError, ValidationError
from relaykit.ids import new_id, utcnow
from relaykit.keys.loading import KeySet
from relaykit.lifecycle import Action, Status, next_status
from relaykit.pagination import DEFAULT_PER_PAGE, Page, check_choice, check_page
from relaykit.providers import STANDARD_CATEGORIES, Provider
from relaykit.sealing import SealContext, SealError, seal, unseal
from relaykit.storage import integrations as rows
from relaykit.storage.database import Database, json_value, timestamp_text
from relaykit.validation import (
    RESERVED_METADATA_KEY,
    split_credentials,
    validate_create,
    validate_update,
)
from relaykit.wire import Integration

logger = logging.getLogger("relaykit.integrations")

#: How many integration views one service keeps (see IntegrationService._view): a few MB.
VIEW_MEMO_SIZE = 4096

T = TypeVar("T")


class _Changed(enum.Enum):
    CHANGED = "changed"


#: What a :data:`Repeatable` returns when the row changed between its read and its write.
CHANGED = _Changed.CHANGED
Changed = Literal[_Changed.CHANGED]
#: A unit of work that may run more than once: it reads, works outside any transaction
#: (sealing), and writes only if what it read is unchanged, else returns :data:`CHANGED`.
Repeatable = Callable[[], Awaitable[T | Changed]]


async def until_unchanged(attempt: Repeatable[T], *, tries: int) -> T:
    """Run ``attempt`` until it gets its write in, at most ``tries`` times (then a 409)."""
    for _ in range(tries):
        result = await attempt()
        if result is not CHANGED:
            return result
    raise ConflictError(
        "The integration kept changing while it was being updated; send the request again."
    )


DUPLICATE_MESSAGE = "An integration for this provider already exists."
#: Why an integration whose sealed credentials fail authentication (or are corrupt) is in
#: ``error``, and what a PATCH that would need them answers (409 ``credentials_unreadable``).
CREDENTIALS_UNREADABLE_MESSAGE = (
    "The stored credentials cannot be opened: they failed authentication (altered, or "
    "copied from another integration). Send every sensitive credential field again to "
    "replace them."
)
NOT_FOUND_MESSAGE = "Integration not found."
STATUS_NAMES = [status.value for status in Status]
#: How often a PATCH of credentials starts again when a concurrent write changed the row.
UPDATE_TRIES = 5


_MOVE_ACTIONS = {
    Action.ACTIVATE: audit.INTEGRATION_ACTIVATED,
    Action.DISABLE: audit.INTEGRATION_DISABLED,
}


def _edit_details(row: sa.Row[Any], values: dict[str, Any]) -> dict[str, Any]:
    """What a PATCH changes besides credentials, for its audit event: the fields whose value
    differs from the stored one, the capabilities before and after, the metadata keys
    changed (names only: a tenant's metadata values stay out of the trail)."""
    details: dict[str, Any] = {}
    fields = []
    capabilities = values.get("enabled_capabilities")
    if capabilities is not None and list(capabilities) != list(row.enabled_capabilities):
        fields.append("enabled_capabilities")
        details["enabled_capabilities"] = {
            "before": list(row.enabled_capabilities),
            "after": list(capabilities),
        }
    metadata = values.get("metadata")
    if metadata is not None:
        keys = audit.changed_keys(row.metadata or {}, metadata)
        if keys:
            fields.append("metadata")
            details["metadata_keys"] = keys
    if fields:
        details["fields"] = fields
    return details


def replaces_all_sensitive(provider: Provider, sent: Mapping[str, Any]) -> bool:
    """Whether a PATCH's ``credentials`` send every sensitive field the provider's schema
    declares (each key present; an optional one may be null, which clears it), so the
    stored sealed blob is not needed to build the new one. Sending only the required ones
    of a schema with optional sensitive fields is not every one. A provider with no
    sensitive field never qualifies (it has no blob to replace)."""
    sensitive = provider.sensitive_fields
    return bool(sensitive) and all(name in sent for name in sensitive)


class IntegrationService:
    def __init__(
        self,
        database: Database,
        catalog: Catalog,
        key_provider: KeySet,
        *,
        on_pending: Callable[[], None] | None = None,
    ) -> None:
        self.database = database
        self.catalog = catalog
        self.key_provider = key_provider
        self._categories = sorted({*STANDARD_CATEGORIES, *(p.category for p in catalog)})
        # Called after a commit that leaves a row due for verification (wakes the worker).
        self._on_pending = on_pending or (lambda: None)
        # Views already built, keyed by the row's raw values (see _view).
        self._views: dict[tuple[Any, ...], Integration] = {}

    # -- reads ---------------------------------------------------------------------------------

    async def get(self, tenant_id: str, integration_id: str) -> Integration:
        found = await rows.view_row(self.database, tenant_id, integration_id)
        if found is None:
            raise NotFoundError(NOT_FOUND_MESSAGE)
        return self._view(found)

    async def list(
        self,
        tenant_id: str,
        *,
        status: str | None = None,
        category: str | None = None,
        page: int = 1,
        per_page: int = DEFAULT_PER_PAGE,
    ) -> Page[Integration]:
        """One page of the tenant's live integrations, oldest first."""
        self._check_filters(status, category, page, per_page)
        total, found = await rows.view_page(
            self.database, tenant_id, status=status, category=category, page=page, per_page=per_page
        )
        return Page([self._view(row) for row in found], total, page, per_page)

    async def configured_providers(self, tenant_id: str) -> set[str]:
        """Names of the providers the tenant has a live integration for."""
        return await self.database.read(rows.configured_providers, tenant_id)

    def _check_filters(
        self, status: str | None, category: str | None, page: int, per_page: int
    ) -> None:
        errors: dict[str, list[str]] = {}
        check_choice("status", status, STATUS_NAMES, errors)
        check_choice("category", category, self._categories, errors)
        check_page(page, per_page, errors)
        if errors:
            raise ValidationError(errors)

    # -- writes --------------------------------------------------------------------------------

    async def create(self, tenant_id: str, payload: Any) -> Integration:
        request = validate_create(payload, self.catalog)
        integration_id = new_id()
        now = utcnow()
        context = SealContext(tenant_id, integration_id, request.provider.name)
        sealed = await self._seal(request.secret, context) if request.secret else None
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
        event = {
            "provider": request.provider.name,
            "enabled_capabilities": request.enabled_capabilities,
            "credential_fields": sorted({*request.public, *request.secret}),
            "metadata_keys": sorted(request.metadata),
        }

        def insert(conn: sa.Connection) -> bool:
            # The partial unique index decides: one statement inserts unless a live row exists.
            if not rows.insert_if_new(conn, values):
                return False
            audit.record_integration(
                conn,
                tenant_id,
                integration_id,
                audit.INTEGRATION_CREATED,
                status_after=Status.PENDING_VERIFY.value,
                details=event,
                now=now,
            )
            return True

        if not await self.database.transaction(insert):
            raise ValidationError({"provider": [DUPLICATE_MESSAGE]})
        logger.info(
            "integration %s created for tenant %s (provider %s, fields %s)",
            integration_id,
            tenant_id,
            request.provider.name,
            ",".join(sorted({*request.public, *request.secret})),
        )
        self._on_pending()
        # The row is what was inserted (no database default fills a shown column).
        return self._view([values[name] for name in rows.VIEW_COLUMNS])

    async def update(self, tenant_id: str, integration_id: str, payload: Any) -> Integration:
        return await until_unchanged(
            functools.partial(self._try_update, tenant_id, integration_id, payload),
            tries=UPDATE_TRIES,
        )

    async def _try_update(
        self, tenant_id: str, integration_id: str, payload: Any
    ) -> Integration | Changed:
        """One try of :meth:`update`: reads the row, opens and seals outside any
        transaction, and writes only if the row is still as read."""
        row = await self.database.read(self._row, tenant_id, integration_id)
        provider = self._provider(row.provider)
        request = validate_update(payload, provider)
        now = utcnow()
        values: dict[str, Any] = {}
        if request.enabled_capabilities is not None:
            values["enabled_capabilities"] = request.enabled_capabilities
        if request.metadata is not None:
            values["metadata"] = request.metadata
        credentials, credential_fields = (
            await self._credential_changes(row, provider, request.credentials, now)
            if request.credentials
            else ({}, [])
        )
        edited = _edit_details(row, values)

        def write(conn: sa.Connection) -> sa.Row[Any] | None:
            if credentials:
                moved = rows.change_status(
                    conn,
                    row.id,
                    Action.CREDENTIALS_CHANGED,
                    current=row.status,
                    verification=None,
                    now=now,
                    also={**values, **credentials},
                    only_if={
                        "credentials_version": row.credentials_version,
                        "updated_at": row.updated_at,
                    },
                )
            elif values:
                # Only over the row as read (every write moves updated_at): the audit event
                # describes the change from what was read, so a concurrent write makes this
                # one start again rather than record a wrong before/after.
                moved = rows.update_fields(
                    conn,
                    row.id,
                    {**values, "updated_at": now},
                    only_if={"updated_at": row.updated_at},
                )
            else:
                moved = True
            if not moved:
                return None
            if credentials:
                audit.record_integration(
                    conn,
                    tenant_id,
                    row.id,
                    audit.INTEGRATION_CREDENTIALS_REPLACED,
                    status_before=row.status,
                    status_after=Status.PENDING_VERIFY.value,
                    details={"credential_fields": list(credential_fields), **edited},
                    now=now,
                )
            elif edited:
                audit.record_integration(
                    conn,
                    tenant_id,
                    row.id,
                    audit.INTEGRATION_UPDATED,
                    status_before=row.status,
                    status_after=row.status,
                    details=edited,
                    now=now,
                )
            return rows.find(conn, tenant_id, row.id)

        written = await self.database.transaction(write)
        if written is None:
            if await self.database.read(rows.find, tenant_id, integration_id) is None:
                raise NotFoundError(NOT_FOUND_MESSAGE)  # deleted meanwhile
            return CHANGED
        changed = sorted({*values, *credentials} - {"updated_at"})
        logger.info("integration %s updated (%s)", row.id, ",".join(changed) or "no change")
        if credentials:
            self._on_pending()
        return self.view(written)

    async def _credential_changes(
        self, row: sa.Row[Any], provider: Provider, sent: dict[str, Any], now: dt.datetime
    ) -> tuple[dict[str, Any], Sequence[str]]:
        """New credential columns for ``sent`` merged over the stored values, or ``{}``; and
        the names of the fields whose values changed (for the audit event, never the values).

        Fields not sent keep their stored values; an optional field sent as null is removed.
        Changed values re-seal (a new data key) and queue a new verification. Values equal
        to the stored ones change nothing, except for an integration in ``error``: the
        contract tells tenants to PATCH the credentials to verify again, so that does.

        A body that sends every sensitive field of the provider's schema (each one present,
        an optional one possibly null to clear it) decides the whole sealed blob, so it does
        not need the old one: the old blob is still opened to compare (the same values
        change nothing), but if it cannot be opened, every sensitive field sent counts as
        changed and the credentials are re-sealed and verified again. Otherwise the old
        blob is opened to merge over; if it cannot be,
        :class:`~relaykit.sealing.CredentialsUnreadable` (the blob's fault) or
        :class:`~relaykit.sealing.KeyUnavailable` (the key provider's) propagates and
        nothing changes.
        """
        context = SealContext(row.tenant_id, row.id, row.provider)
        sent_public, sent_secret = split_credentials(provider, sent)
        replaces_every_secret = replaces_all_sensitive(provider, sent)
        stored_secret: dict[str, Any] = {}
        unknown_stored = False  # the old values could not be read: every sent one is new
        if row.sealed_credentials:
            try:
                stored_secret = await unseal(row.sealed_credentials, context, self.key_provider)
            except SealError:
                if not replaces_every_secret:
                    raise
                unknown_stored = True
        public = {**row.public_credentials, **sent_public}
        secret = {**stored_secret, **sent_secret}
        public = {k: v for k, v in public.items() if v is not None}
        secret = {k: v for k, v in secret.items() if v is not None}
        changed = audit.changed_keys(row.public_credentials, public)
        if unknown_stored:
            changed += sorted(sent_secret)
        else:
            changed += audit.changed_keys(stored_secret, secret)
        if not changed and row.status != Status.ERROR.value:
            return {}, []
        return {
            "public_credentials": public,
            "sealed_credentials": await self._seal(secret, context) if secret else None,
            "credentials_version": row.credentials_version + 1,
            "verified_at": None,
            "verify_attempts": 0,
            "next_verify_at": now,
            "lease_owner": None,
            "lease_expires_at": None,
        }, sorted(changed)

    async def delete(self, tenant_id: str, integration_id: str) -> None:
        def apply(conn: sa.Connection) -> bool:
            row = rows.find(conn, tenant_id, integration_id)
            now = utcnow()
            if row is None or not rows.soft_delete(conn, tenant_id, integration_id, now):
                return False
            audit.record_integration(
                conn,
                tenant_id,
                row.id,
                audit.INTEGRATION_DELETED,
                status_before=row.status,
                details={"provider": row.provider},
                now=now,
            )
            return True

        if not await self.database.transaction(apply):
            raise NotFoundError(NOT_FOUND_MESSAGE)

    async def activate(self, tenant_id: str, integration_id: str) -> Integration:
        return await self._move(tenant_id, integration_id, Action.ACTIVATE)

    async def disable(self, tenant_id: str, integration_id: str) -> Integration:
        return await self._move(tenant_id, integration_id, Action.DISABLE)

    async def _move(self, tenant_id: str, integration_id: str, action: Action) -> Integration:
        def apply(conn: sa.Connection) -> sa.Row[Any]:
            row = self._row(conn, tenant_id, integration_id)
            # In one write transaction the row cannot change between the read and the move
            # on SQLite; on PostgreSQL a concurrent move makes this one a 409, not a lost one.
            now = utcnow()
            if not rows.change_status(
                conn, row.id, action, current=row.status, verification="keep", now=now
            ):
                raise ConflictError("The integration changed meanwhile; send the request again.")
            audit.record_integration(
                conn,
                tenant_id,
                row.id,
                _MOVE_ACTIONS[action],
                status_before=row.status,
                status_after=next_status(action, row.status).value,
                now=now,
            )
            logger.info("integration %s: %s from %s", row.id, action, row.status)
            return self._row(conn, tenant_id, integration_id)

        return self.view(await self.database.transaction(apply))

    # -- helpers -------------------------------------------------------------------------------

    async def _seal(self, secret: Mapping[str, Any], context: SealContext) -> bytes:
        """Seal under the database's primary key (read again if this node's copy is stale)."""
        await self.key_provider.refresh()
        return await seal(secret, context, self.key_provider)

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

    def view(self, row: sa.Row[Any]) -> Integration:
        """The API's view of a row read with SQLAlchemy."""
        return self._view(tuple(getattr(row, name) for name in rows.VIEW_COLUMNS))

    def _view(self, values: Sequence[Any]) -> Integration:
        """The view of VIEW_COLUMNS' values, raw (Database.fetch) or typed (SQLAlchemy).

        A view is a function of those values alone (and of the catalog, fixed for the
        process's life), so the views of raw rows are kept, keyed by the values themselves:
        a list or get of unchanged rows decodes and builds nothing (about a sixth of an
        uncached list's time, docs/performance.md). A changed row has other values, so it
        can never be shown stale; the oldest views go first past :data:`VIEW_MEMO_SIZE`.
        The views are frozen structs; their dicts and lists are never changed by a caller.
        """
        if type(values) is not tuple:
            return self._build_view(values)
        try:
            return self._views[values]
        except KeyError:
            pass
        except TypeError:  # decoded JSON values (a dict from SQLAlchemy) are not hashable
            return self._build_view(values)
        view = self._views[values] = self._build_view(values)
        if len(self._views) > VIEW_MEMO_SIZE:
            del self._views[next(iter(self._views))]
        return view

    def _build_view(self, values: Sequence[Any]) -> Integration:
        (
            integration_id,
            provider_name,
            category,
            status,
            capabilities,
            public,
            stored_metadata,
            verification,
            verified_at,
            created_at,
            updated_at,
        ) = values[:11]
        provider = self.catalog.get(provider_name)
        public = json_value(public) or {}
        if provider is not None:
            credentials = {
                name: (None if spec.sensitive else public.get(name))
                for name, spec in provider.credential_schema.items()
            }
        else:  # plugin uninstalled: show what is public, never anything sealed
            credentials = dict(public)
        metadata = dict(json_value(stored_metadata) or {})
        verification = json_value(verification)
        if verification:
            metadata[RESERVED_METADATA_KEY] = verification
        return Integration(
            id=integration_id,
            provider=provider_name,
            display_name=provider.display_name if provider else provider_name,
            category=category,
            status=status,
            enabled_capabilities=list(json_value(capabilities)),
            credentials=credentials,
            metadata=metadata,
            verified_at=timestamp_text(verified_at),
            created_at=timestamp_text(created_at) or "",
            updated_at=timestamp_text(updated_at) or "",
        )
