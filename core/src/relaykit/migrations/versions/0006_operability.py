"""Operating relaykit: the audit trail, the workers' heartbeats, lease reclaims.

``audit_events`` is append-only and hash-chained per tenant (the unique ``(chain, seq)``
refuses a fork); ``worker_heartbeats`` is what ``/ready`` reads to tell a live verification
worker from a dead one; ``integrations.lease_reclaimed`` records whether a row's latest claim
took it from a worker whose lease had expired.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(26)
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", ID, primary_key=True),
        sa.Column("chain", ID, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("tenant_id", ID, nullable=True),
        sa.Column("action", sa.String(63), nullable=False),
        sa.Column("actor", sa.String(63), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("resource_type", sa.String(32), nullable=False),
        sa.Column("resource_id", ID, nullable=True),
        sa.Column("integration_id", ID, nullable=True),
        sa.Column("status_before", sa.String(32), nullable=True),
        sa.Column("status_after", sa.String(32), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("prev_digest", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.UniqueConstraint("chain", "seq", name="uq_audit_events_chain_seq"),
    )
    op.create_index(
        "ix_audit_events_integration", "audit_events", ["chain", "integration_id", "seq"]
    )
    op.create_table(
        "worker_heartbeats",
        sa.Column("owner", sa.String(128), primary_key=True),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("beat_at", TIMESTAMP, nullable=False),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
    )
    with op.batch_alter_table("integrations") as batch:
        batch.add_column(
            sa.Column("lease_reclaimed", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("integrations") as batch:
        batch.drop_column("lease_reclaimed")
    op.drop_table("worker_heartbeats")
    op.drop_index("ix_audit_events_integration", table_name="audit_events")
    op.drop_table("audit_events")
