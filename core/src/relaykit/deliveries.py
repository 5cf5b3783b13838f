"""Delivery attempts: the record of every try of every operation, read by the API."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from relaykit.catalog import Catalog
from relaykit.dispatch import attempt_view
from relaykit.errors import NotFoundError, ValidationError
from relaykit.pagination import DEFAULT_PER_PAGE, Page, check_choice, check_page, select_page
from relaykit.storage.database import Database
from relaykit.storage.models import delivery_attempts

ATTEMPT_STATUSES = ("succeeded", "failed")
_ID = re.compile(r"^[0-9a-z]{26}$")


class DeliveryAttemptService:
    def __init__(self, database: Database, catalog: Catalog) -> None:
        self.database = database
        self.catalog = catalog

    def get(self, tenant_id: str, attempt_id: str) -> dict[str, Any]:
        def query(conn: sa.Connection) -> dict[str, Any]:
            row = None
            if _ID.match(attempt_id):
                row = conn.execute(
                    sa.select(delivery_attempts).where(
                        delivery_attempts.c.id == attempt_id,
                        delivery_attempts.c.tenant_id == tenant_id,
                    )
                ).first()
            if row is None:
                raise NotFoundError("Delivery attempt not found.")
            return attempt_view(row._mapping)

        return self.database.read(query)

    def list(
        self,
        tenant_id: str,
        *,
        integration_id: str | None = None,
        capability: str | None = None,
        status: str | None = None,
        page: int = 1,
        per_page: int = DEFAULT_PER_PAGE,
    ) -> Page[dict[str, Any]]:
        errors: dict[str, list[str]] = {}
        check_choice("status", status, ATTEMPT_STATUSES, errors)
        check_choice("capability", capability, sorted(self.catalog.contracts), errors)
        if integration_id is not None and not _ID.match(integration_id):
            errors["integration_id"] = ["The integration_id must be an integration id."]
        check_page(page, per_page, errors)
        if errors:
            raise ValidationError(errors)
        conditions = [delivery_attempts.c.tenant_id == tenant_id]
        for column, value in (
            (delivery_attempts.c.integration_id, integration_id),
            (delivery_attempts.c.capability, capability),
            (delivery_attempts.c.status, status),
        ):
            if value is not None:
                conditions.append(column == value)

        return self.database.read(
            lambda conn: select_page(
                conn,
                delivery_attempts,
                conditions,
                page=page,
                per_page=per_page,
                view=lambda row: attempt_view(row._mapping),
            )
        )
