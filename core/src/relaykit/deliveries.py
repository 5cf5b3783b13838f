"""Delivery attempts: the record of every try of every operation, read by the API."""

from __future__ import annotations

from typing import Any

from relaykit.catalog import Catalog
from relaykit.errors import NotFoundError, ValidationError
from relaykit.ledger import ATTEMPT_STATUSES, attempt_view
from relaykit.pagination import (
    DEFAULT_PER_PAGE,
    Page,
    check_choice,
    check_id,
    check_page,
    is_id,
)
from relaykit.storage import delivery_attempts as attempt_rows
from relaykit.storage.database import Database


class DeliveryAttemptService:
    def __init__(self, database: Database, catalog: Catalog) -> None:
        self.database = database
        self.catalog = catalog

    async def get(self, tenant_id: str, attempt_id: str) -> dict[str, Any]:
        row = (
            await self.database.read(attempt_rows.find, tenant_id, attempt_id)
            if is_id(attempt_id)
            else None
        )
        if row is None:
            raise NotFoundError("Delivery attempt not found.")
        return attempt_view(row)

    async def list(
        self,
        tenant_id: str,
        *,
        operation_id: str | None = None,
        integration_id: str | None = None,
        capability: str | None = None,
        status: str | None = None,
        page: int = 1,
        per_page: int = DEFAULT_PER_PAGE,
    ) -> Page[dict[str, Any]]:
        errors: dict[str, list[str]] = {}
        check_choice("status", status, ATTEMPT_STATUSES, errors)
        check_choice("capability", capability, sorted(self.catalog.contracts), errors)
        check_id("integration_id", integration_id, "an integration", errors)
        check_id("operation_id", operation_id, "an operation", errors)
        check_page(page, per_page, errors)
        if errors:
            raise ValidationError(errors)
        return await self.database.read(
            lambda conn: attempt_rows.page_of(
                conn,
                tenant_id,
                operation_id=operation_id,
                integration_id=integration_id,
                capability=capability,
                status=status,
                page=page,
                per_page=per_page,
                view=attempt_view,
            )
        )
