"""Routing rules: which integration serves a capability for a tenant, and which takes over.

Decisions (docs/routing.md explains them to users):

* A rule names a capability, an integration and optionally a ``fallback_integration_id``.
  When written, both must be the tenant's live integrations with the capability enabled,
  and differ. Their *status* is not checked then (a rule may be written while an
  integration is still ``pending_verify``): routing checks status at use.
* Order of use for a capability: the default rule first, then the other rules by
  ``priority``, **higher number first** (ties: older rule first). Each rule offers its
  integration, then its fallback. The dispatcher tries them in that order, skipping any
  that is not ``active``, has the capability disabled, or is deleted, and any it already
  tried.
* At most one default rule per capability (a partial unique index). Writing a rule with
  ``is_default: true`` makes it the default and clears the flag on the previous one, in
  the same transaction: "make this the default" is one call.
* No rule for a capability, or no usable integration in any rule: ``no_active_provider``.
* Each write appends its audit event (:mod:`relaykit.audit`) in its transaction:
  ``routing_rule.created`` (the rule's fields), ``routing_rule.updated`` (the fields that
  changed, before and after; an update that changes nothing records nothing),
  ``routing_rule.deleted`` (the fields it had). The event's ``integration_id`` is the
  rule's (new) integration.
"""

from __future__ import annotations

import builtins
import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import sqlalchemy as sa

from relaykit import audit
from relaykit.catalog import Catalog
from relaykit.errors import ConflictError, NotFoundError, ValidationError
from relaykit.ids import isoformat_z, new_id, utcnow
from relaykit.pagination import DEFAULT_PER_PAGE, Page, check_choice, check_page
from relaykit.storage import integrations as integration_rows
from relaykit.storage import routing_rules as rule_rows
from relaykit.storage.database import Database, IntegrityError, json_value
from relaykit.validation import Problems
from relaykit.wire import RoutingRule

NOT_FOUND_MESSAGE = "Routing rule not found."
RULE_FIELDS = ("capability", "integration_id", "fallback_integration_id", "is_default", "priority")
PRIORITY_RANGE = (-1_000_000, 1_000_000)


class RouteCandidate(msgspec.Struct, frozen=True):
    """An integration routing may try, with what the dispatcher needs to call it."""

    integration_id: str
    provider: str
    public_credentials: dict[str, Any]
    sealed_credentials: bytes | None
    #: the credentials these are: a refusal of them moves the integration only if it still
    #: holds them
    credentials_version: int


def _view(row: Any) -> RoutingRule:
    return RoutingRule(
        id=row.id,
        capability=row.capability,
        integration_id=row.integration_id,
        fallback_integration_id=row.fallback_integration_id,
        is_default=bool(row.is_default),
        priority=int(row.priority),
        created_at=isoformat_z(row.created_at) or "",
        updated_at=isoformat_z(row.updated_at) or "",
    )


def _record(
    conn: sa.Connection,
    tenant_id: str,
    action: str,
    rule_id: str,
    values: dict[str, Any],
    details: dict[str, Any],
    now: dt.datetime,
) -> None:
    """A rule's audit event (its fields are configuration, never secret)."""
    audit.record(
        conn,
        tenant_id=tenant_id,
        action=action,
        resource_type="routing_rule",
        resource_id=rule_id,
        integration_id=values["integration_id"],
        details=details,
        now=now,
    )


class RoutingService:
    def __init__(self, database: Database, catalog: Catalog) -> None:
        self.database = database
        self.catalog = catalog

    # -- rules ---------------------------------------------------------------------------------

    async def create(self, tenant_id: str, payload: Any) -> RoutingRule:
        def apply(conn: sa.Connection) -> RoutingRule:
            values = self._validated(conn, tenant_id, payload, current=None)
            now = utcnow()
            rule_id = new_id()
            if values["is_default"]:
                rule_rows.clear_default(conn, tenant_id, values["capability"], now)
            rule_rows.insert(
                conn,
                {
                    "id": rule_id,
                    "tenant_id": tenant_id,
                    "created_at": now,
                    "updated_at": now,
                    **values,
                },
            )
            _record(conn, tenant_id, audit.ROUTING_RULE_CREATED, rule_id, values, dict(values), now)
            return _view(self._row(conn, tenant_id, rule_id))

        return await self._write_rule(apply)

    async def update(self, tenant_id: str, rule_id: str, payload: Any) -> RoutingRule:
        def apply(conn: sa.Connection) -> RoutingRule:
            current = self._row(conn, tenant_id, rule_id)
            values = self._validated(conn, tenant_id, payload, current=current)
            now = utcnow()
            if values["is_default"]:
                rule_rows.clear_default(conn, tenant_id, values["capability"], now, keep=rule_id)
            if not rule_rows.update(
                conn, rule_id, {"updated_at": now, **values}, seen=current.updated_at
            ):
                raise ConflictError(
                    "The routing rule was changed by another request meanwhile; send the "
                    "request again."
                )
            before = {key: getattr(current, key) for key in RULE_FIELDS}
            changed = [key for key in RULE_FIELDS if before[key] != values[key]]
            if changed:
                details = {
                    "fields": changed,
                    "before": {key: before[key] for key in changed},
                    "after": {key: values[key] for key in changed},
                }
                _record(conn, tenant_id, audit.ROUTING_RULE_UPDATED, rule_id, values, details, now)
            return _view(self._row(conn, tenant_id, rule_id))

        return await self._write_rule(apply)

    async def _write_rule(self, apply: Callable[[sa.Connection], RoutingRule]) -> RoutingRule:
        try:
            return await self.database.transaction(apply)
        except IntegrityError:
            # Two rules made the default of one capability at the same moment (PostgreSQL):
            # the partial unique index let one through.
            raise ConflictError(
                "Another default rule for this capability was written at the same time; retry."
            ) from None

    async def get(self, tenant_id: str, rule_id: str) -> RoutingRule:
        return _view(await self.database.read(self._row, tenant_id, rule_id))

    async def delete(self, tenant_id: str, rule_id: str) -> None:
        def apply(conn: sa.Connection) -> None:
            self._row(conn, tenant_id, rule_id)  # the tenant's, or a 404
            row = rule_rows.delete(conn, rule_id)
            if row is None:  # deleted meanwhile (PostgreSQL): that delete has its event
                raise NotFoundError(NOT_FOUND_MESSAGE)
            values = {key: getattr(row, key) for key in RULE_FIELDS}
            _record(conn, tenant_id, audit.ROUTING_RULE_DELETED, rule_id, values, values, utcnow())

        await self.database.transaction(apply)

    async def list(
        self,
        tenant_id: str,
        *,
        capability: str | None = None,
        page: int = 1,
        per_page: int = DEFAULT_PER_PAGE,
    ) -> Page[RoutingRule]:
        errors: dict[str, list[str]] = {}
        check_choice("capability", capability, sorted(self.catalog.contracts), errors)
        check_page(page, per_page, errors)
        if errors:
            raise ValidationError(errors)
        return await self.database.read(
            lambda conn: rule_rows.page_of(
                conn, tenant_id, capability=capability, page=page, per_page=per_page, view=_view
            )
        )

    def _row(self, conn: sa.Connection, tenant_id: str, rule_id: str) -> Any:
        row = rule_rows.find(conn, tenant_id, rule_id)
        if row is None:
            raise NotFoundError(NOT_FOUND_MESSAGE)
        return row

    def _validated(
        self, conn: sa.Connection, tenant_id: str, payload: Any, *, current: Any
    ) -> dict[str, Any]:
        """The rule's columns after applying ``payload`` (all fields on create, a partial
        update otherwise), checked as a whole."""
        if not isinstance(payload, dict):
            raise ValidationError({"body": ["The request body must be a JSON object."]})
        problems = Problems()
        for key in payload:
            if key not in RULE_FIELDS:
                problems.add(str(key), "This field is not allowed.")
        merged: dict[str, Any] = (
            {key: getattr(current, key) for key in RULE_FIELDS}
            if current is not None
            else {"fallback_integration_id": None, "is_default": False, "priority": 0}
        )
        merged.update({k: v for k, v in payload.items() if k in RULE_FIELDS})

        capability = merged.get("capability")
        if capability is None:
            problems.add("capability", "The capability field is required.")
        elif not isinstance(capability, str):
            problems.add("capability", "The capability field must be a string.")
            capability = None
        elif capability not in self.catalog.contracts:
            problems.add("capability", "The selected capability is invalid.")
        if not isinstance(merged["is_default"], bool):
            problems.add("is_default", "The is_default field must be true or false.")
        priority = merged["priority"]
        if isinstance(priority, bool) or not isinstance(priority, int):
            problems.add("priority", "The priority field must be an integer.")
        elif not PRIORITY_RANGE[0] <= priority <= PRIORITY_RANGE[1]:
            problems.add(
                "priority",
                f"The priority must be between {PRIORITY_RANGE[0]} and {PRIORITY_RANGE[1]}.",
            )
        for field, required in (("integration_id", True), ("fallback_integration_id", False)):
            value = merged.get(field)
            if value is None:
                if required:
                    problems.add(field, f"The {field} field is required.")
                continue
            if not isinstance(value, str):
                problems.add(field, f"The {field} field must be a string.")
                continue
            row = integration_rows.find(conn, tenant_id, value)
            if row is None:
                problems.add(field, f"The selected {field} is invalid.")
            elif (
                capability in self.catalog.contracts and capability not in row.enabled_capabilities
            ):
                problems.add(field, f"The integration does not have {capability} enabled.")
        if merged.get("fallback_integration_id") is not None and merged.get(
            "fallback_integration_id"
        ) == merged.get("integration_id"):
            problems.add(
                "fallback_integration_id", "The fallback must differ from the integration."
            )
        problems.raise_if_any()
        return {key: merged[key] for key in RULE_FIELDS}

    # -- resolution ------------------------------------------------------------------------------

    async def candidates(self, tenant_id: str, capability: str) -> builtins.list[RouteCandidate]:
        """The integrations to try for ``capability``, in order, usable right now."""
        return candidates_from(
            await rule_rows.route_rows(self.database, tenant_id, capability), capability
        )

    def candidates_in(
        self, conn: sa.Connection, tenant_id: str, capability: str
    ) -> builtins.list[RouteCandidate]:
        """:meth:`candidates` inside a transaction the caller holds."""
        return candidates_from(rule_rows.route_rows_in(conn, tenant_id, capability), capability)


def candidates_from(found: Sequence[Sequence[Any]], capability: str) -> list[RouteCandidate]:
    """The candidates in the route's rows (:func:`relaykit.storage.routing_rules.route_rows`):
    each rule's integration, then its fallback, in rule order, each integration once, those
    active with ``capability`` enabled."""
    order: list[str] = []
    usable: dict[str, Any] = {}
    for _rule_id, integration_id, fallback_id, found_id, *integration in found:
        for candidate in (integration_id, fallback_id):
            if candidate and candidate not in order:
                order.append(candidate)
        if found_id is not None and found_id not in usable:
            provider, capabilities, public, sealed, version = integration
            if capability in json_value(capabilities):
                usable[found_id] = (provider, json_value(public) or {}, sealed, version)
    return [
        RouteCandidate(
            integration_id=integration_id,
            provider=usable[integration_id][0],
            public_credentials=dict(usable[integration_id][1]),
            sealed_credentials=usable[integration_id][2],
            credentials_version=int(usable[integration_id][3]),
        )
        for integration_id in order
        if integration_id in usable
    ]
