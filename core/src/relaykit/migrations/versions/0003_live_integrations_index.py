"""The tenant's live integrations in id order: a partial index.

The integration list reads a tenant's live rows in id order. The full ``(tenant_id, id)``
index also holds every soft-deleted row, which a tenant with a long history has in the tens
of thousands; the partial index holds only the live ones, so the list and its count cost
the same whatever the history (docs/performance.md).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = sa.text("deleted_at IS NULL")


def upgrade() -> None:
    op.create_index(
        "ix_integrations_tenant_live",
        "integrations",
        ["tenant_id", "id"],
        sqlite_where=LIVE,
        postgresql_where=LIVE,
    )
    op.drop_index("ix_integrations_tenant_id_id", table_name="integrations")


def downgrade() -> None:
    op.create_index("ix_integrations_tenant_id_id", "integrations", ["tenant_id", "id"])
    op.drop_index("ix_integrations_tenant_live", table_name="integrations")
