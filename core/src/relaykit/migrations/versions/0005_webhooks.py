"""Inbound webhooks: the events providers send, and what became of each delivery attempt.

``webhook_events`` holds every event once per integration and dedupe key (the unique
constraint decides between concurrent deliveries of one event). Delivery attempts gain the
provider's id of what they sent (``provider_object_id``, the key a webhook names it by) and
the delivery status webhooks reported. Rows of earlier versions keep a null object id: their
webhooks are stored, not applied.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(26)
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "webhook_events",
        sa.Column("id", ID, primary_key=True),
        sa.Column("tenant_id", ID, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column(
            "integration_id",
            ID,
            sa.ForeignKey("integrations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("provider", sa.String(63), nullable=False),
        sa.Column("dedupe_key", sa.String(255), nullable=False),
        sa.Column("type", sa.String(255), nullable=False),
        sa.Column("object_id", sa.String(255), nullable=True),
        sa.Column("status", sa.String(32), nullable=True),
        sa.Column("provider_code", sa.String(100), nullable=True),
        sa.Column("occurred_at", TIMESTAMP, nullable=True),
        sa.Column("received_at", TIMESTAMP, nullable=False),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.UniqueConstraint("integration_id", "dedupe_key", name="uq_webhook_events_dedupe"),
    )
    op.create_index("ix_webhook_events_tenant_id_id", "webhook_events", ["tenant_id", "id"])
    op.create_index("ix_webhook_events_object", "webhook_events", ["integration_id", "object_id"])
    with op.batch_alter_table("delivery_attempts") as batch:
        batch.add_column(sa.Column("provider_object_id", sa.String(255), nullable=True))
        batch.add_column(sa.Column("delivery_status", sa.String(32), nullable=True))
        batch.add_column(sa.Column("delivery_updated_at", TIMESTAMP, nullable=True))
    op.create_index(
        "ix_delivery_attempts_provider_object",
        "delivery_attempts",
        ["integration_id", "provider_object_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_delivery_attempts_provider_object", table_name="delivery_attempts")
    with op.batch_alter_table("delivery_attempts") as batch:
        batch.drop_column("delivery_updated_at")
        batch.drop_column("delivery_status")
        batch.drop_column("provider_object_id")
    op.drop_index("ix_webhook_events_object", table_name="webhook_events")
    op.drop_index("ix_webhook_events_tenant_id_id", table_name="webhook_events")
    op.drop_table("webhook_events")
