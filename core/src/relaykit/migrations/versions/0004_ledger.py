"""The operations ledger: write-ahead attempts, leases on operations, expiring keys.

Operations gain ``lease_expires_at`` (while ``in_progress``: when the process running it is
presumed gone) and ``key_expires_at`` (when its idempotency key stops holding); an
operation left ``pending`` by an earlier version becomes ``in_progress`` with a lease that
has already run out, so the sweep settles it. Attempts are written ``in_flight`` before the
provider call, so their outcome, duration and completion time may be null.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IN_PROGRESS = sa.text("status = 'in_progress'")
IN_FLIGHT = sa.text("status = 'in_flight'")


def upgrade() -> None:
    with op.batch_alter_table("operations") as batch:
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("key_expires_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE operations SET status = 'in_progress', lease_expires_at = created_at"
        " WHERE status = 'pending'"
    )
    op.create_index("ix_operations_tenant_id_id", "operations", ["tenant_id", "id"])
    op.create_index(
        "ix_operations_in_progress",
        "operations",
        ["lease_expires_at"],
        sqlite_where=IN_PROGRESS,
        postgresql_where=IN_PROGRESS,
    )
    op.create_index("ix_operations_created_at", "operations", ["created_at"])
    with op.batch_alter_table("delivery_attempts") as batch:
        batch.alter_column("outcome", existing_type=sa.String(20), nullable=True)
        batch.alter_column("duration_ms", existing_type=sa.Float(), nullable=True)
        batch.alter_column("completed_at", existing_type=sa.DateTime(timezone=True), nullable=True)
    op.create_index(
        "ix_delivery_attempts_in_flight",
        "delivery_attempts",
        ["started_at"],
        sqlite_where=IN_FLIGHT,
        postgresql_where=IN_FLIGHT,
    )


def downgrade() -> None:
    op.drop_index("ix_delivery_attempts_in_flight", table_name="delivery_attempts")
    op.execute(
        "UPDATE delivery_attempts SET status = 'failed', outcome = 'unknown',"
        " duration_ms = 0, completed_at = started_at WHERE completed_at IS NULL"
    )
    with op.batch_alter_table("delivery_attempts") as batch:
        batch.alter_column("outcome", existing_type=sa.String(20), nullable=False)
        batch.alter_column("duration_ms", existing_type=sa.Float(), nullable=False)
        batch.alter_column("completed_at", existing_type=sa.DateTime(timezone=True), nullable=False)
    op.drop_index("ix_operations_created_at", table_name="operations")
    op.drop_index("ix_operations_in_progress", table_name="operations")
    op.drop_index("ix_operations_tenant_id_id", table_name="operations")
    op.execute("UPDATE operations SET status = 'failed' WHERE status = 'in_progress'")
    with op.batch_alter_table("operations") as batch:
        batch.drop_column("key_expires_at")
        batch.drop_column("lease_expires_at")
