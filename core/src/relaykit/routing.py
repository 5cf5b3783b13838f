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
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import sqlalchemy as sa

from relaykit.catalog import Catalog
from relaykit.errors import ConflictError, NotFoundError, ValidationError
from relaykit.ids import isoformat_z, new_id, utcnow
from relaykit.lifecycle import Status
from relaykit.pagination import DEFAULT_PER_PAGE, Page, check_choice, check_page, select_page
from relaykit.storage import integrations as integration_rows
from relaykit.storage.database import Database, json_value
from relaykit.storage.models import integrations, routing_rules
from relaykit.validation import Problems

NOT_FOUND_MESSAGE = "Routing rule not found."
RULE_FIELDS = ("capability", "integration_id", "fallback_integration_id", "is_default", "priority")
PRIORITY_RANGE = (-1_000_000, 1_000_000)


class RoutingRuleView(msgspec.Struct, frozen=True):
    id: str
    capability: str
    integration_id: str
    fallback_integration_id: str | None
    is_default: bool
    priority: int
    created_at: str
    updated_at: str


class RouteCandidate(msgspec.Struct, frozen=True):
    """An integration routing may try, with what the dispatcher needs to call it."""

    integration_id: str
    provider: str
    public_credentials: dict[str, Any]
    sealed_credentials: bytes | None
    rule_id: str


def _view(row: Any) -> RoutingRuleView:
    return RoutingRuleView(
        id=row.id,
        capability=row.capability,
        integration_id=row.integration_id,
        fallback_integration_id=row.fallback_integration_id,
        is_default=bool(row.is_default),
        priority=int(row.priority),
        created_at=isoformat_z(row.created_at) or "",
        updated_at=isoformat_z(row.updated_at) or "",
    )


class RoutingService:
    def __init__(self, database: Database, catalog: Catalog) -> None:
        self.database = database
        self.catalog = catalog

    # -- rules ---------------------------------------------------------------------------------

    def create(self, tenant_id: str, payload: Any) -> RoutingRuleView:
        def apply(conn: sa.Connection) -> RoutingRuleView:
            values = self._validated(conn, tenant_id, payload, current=None)
            now = utcnow()
            rule_id = new_id()
            if values["is_default"]:
                self._clear_default(conn, tenant_id, values["capability"], now)
            conn.execute(
                routing_rules.insert().values(
                    id=rule_id, tenant_id=tenant_id, created_at=now, updated_at=now, **values
                )
            )
            return _view(self._row(conn, tenant_id, rule_id))

        return self._write_rule(apply)

    def update(self, tenant_id: str, rule_id: str, payload: Any) -> RoutingRuleView:
        def apply(conn: sa.Connection) -> RoutingRuleView:
            current = self._row(conn, tenant_id, rule_id)
            values = self._validated(conn, tenant_id, payload, current=current)
            now = utcnow()
            if values["is_default"]:
                self._clear_default(conn, tenant_id, values["capability"], now, keep=rule_id)
            conn.execute(
                routing_rules.update()
                .where(routing_rules.c.id == rule_id)
                .values(updated_at=now, **values)
            )
            return _view(self._row(conn, tenant_id, rule_id))

        return self._write_rule(apply)

    def _write_rule(self, apply: Callable[[sa.Connection], RoutingRuleView]) -> RoutingRuleView:
        try:
            return self.database.write(apply)
        except sa.exc.IntegrityError:
            # Two rules made the default of one capability at the same moment (PostgreSQL):
            # the partial unique index let one through.
            raise ConflictError(
                "Another default rule for this capability was written at the same time; retry."
            ) from None

    def get(self, tenant_id: str, rule_id: str) -> RoutingRuleView:
        return self.database.read(lambda conn: _view(self._row(conn, tenant_id, rule_id)))

    def delete(self, tenant_id: str, rule_id: str) -> None:
        def apply(conn: sa.Connection) -> None:
            self._row(conn, tenant_id, rule_id)
            conn.execute(routing_rules.delete().where(routing_rules.c.id == rule_id))

        self.database.write(apply)

    def list(
        self,
        tenant_id: str,
        *,
        capability: str | None = None,
        page: int = 1,
        per_page: int = DEFAULT_PER_PAGE,
    ) -> Page[RoutingRuleView]:
        errors: dict[str, list[str]] = {}
        check_choice("capability", capability, sorted(self.catalog.contracts), errors)
        check_page(page, per_page, errors)
        if errors:
            raise ValidationError(errors)
        conditions = [routing_rules.c.tenant_id == tenant_id]
        if capability is not None:
            conditions.append(routing_rules.c.capability == capability)

        return self.database.read(
            lambda conn: select_page(
                conn, routing_rules, conditions, page=page, per_page=per_page, view=_view
            )
        )

    def _row(self, conn: sa.Connection, tenant_id: str, rule_id: str) -> Any:
        row = conn.execute(
            sa.select(routing_rules).where(
                routing_rules.c.id == rule_id, routing_rules.c.tenant_id == tenant_id
            )
        ).first()
        if row is None:
            raise NotFoundError(NOT_FOUND_MESSAGE)
        return row

    def _clear_default(
        self, conn: sa.Connection, tenant_id: str, capability: str, now: Any, keep: str = ""
    ) -> None:
        conn.execute(
            routing_rules.update()
            .where(
                routing_rules.c.tenant_id == tenant_id,
                routing_rules.c.capability == capability,
                routing_rules.c.is_default.is_(True),
                routing_rules.c.id != keep,
            )
            .values(is_default=False, updated_at=now)
        )

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

    def candidates(
        self, conn: sa.Connection, tenant_id: str, capability: str
    ) -> builtins.list[RouteCandidate]:
        """The integrations to try for ``capability``, in order, usable right now (inside a
        transaction the caller holds)."""
        found = conn.exec_driver_sql(
            self.database.driver_sql(CANDIDATES_SQL), (tenant_id, capability)
        ).all()
        return candidates_from(found, capability)

    def candidates_now(self, tenant_id: str, capability: str) -> builtins.list[RouteCandidate]:
        """:meth:`candidates` in a read of its own (plain SQL: the dispatch's hot read)."""
        return candidates_from(
            self.database.fetch(CANDIDATES_SQL, (tenant_id, capability)), capability
        )

    def still_usable(
        self, conn: sa.Connection, tenant_id: str, integration_id: str, capability: str
    ) -> bool:
        row = conn.execute(
            sa.select(integrations.c.enabled_capabilities).where(
                integrations.c.id == integration_id,
                integrations.c.tenant_id == tenant_id,
                integrations.c.status == Status.ACTIVE.value,
                integrations.c.deleted_at.is_(None),
            )
        ).first()
        return row is not None and capability in row.enabled_capabilities


#: The tenant's rules for a capability (default first, then by priority, then oldest), each
#: with its integration and fallback that are active right now: one statement, so the route
#: is one snapshot. ('active' is Status.ACTIVE, checked at import below.)
CANDIDATES_SQL = (
    "SELECT r.id, r.integration_id, r.fallback_integration_id,"
    " i.id, i.provider, i.enabled_capabilities, i.public_credentials, i.sealed_credentials"
    " FROM routing_rules r LEFT JOIN integrations i"
    " ON i.id IN (r.integration_id, r.fallback_integration_id) AND i.tenant_id = r.tenant_id"
    " AND i.status = 'active' AND i.deleted_at IS NULL"
    " WHERE r.tenant_id = ? AND r.capability = ?"
    " ORDER BY r.is_default DESC, r.priority DESC, r.id"
)

assert Status.ACTIVE.value == "active"


def candidates_from(found: Sequence[Any], capability: str) -> list[RouteCandidate]:
    """The candidates in :data:`CANDIDATES_SQL`'s rows: each rule's integration, then its
    fallback, in rule order, each integration once, those with ``capability`` enabled."""
    order: list[tuple[str, str]] = []
    usable: dict[str, Any] = {}
    for rule_id, integration_id, fallback_id, found_id, *integration in found:
        for candidate in (integration_id, fallback_id):
            if candidate and all(candidate != seen for seen, _ in order):
                order.append((candidate, rule_id))
        if found_id is not None and found_id not in usable:
            provider, capabilities, public, sealed = integration
            if capability in json_value(capabilities):
                usable[found_id] = (provider, json_value(public) or {}, sealed)
    return [
        RouteCandidate(
            integration_id=integration_id,
            provider=usable[integration_id][0],
            public_credentials=dict(usable[integration_id][1]),
            sealed_credentials=usable[integration_id][2],
            rule_id=rule_id,
        )
        for integration_id, rule_id in order
        if integration_id in usable
    ]
