"""The operations ledger: write-ahead attempts, leases on operations, expiring keys.

Operations gain ``lease_expires_at`` (while ``in_progress``: when the process running it is
presumed gone) and ``key_expires_at`` (when its idempotency key stops holding); the rows of
the previous version are given the ledger's statuses (``_ledger_statuses_for_existing_rows``).
Attempts are written ``in_flight`` before the provider call, so their outcome, duration and
completion time may be null.

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
    _ledger_statuses_for_existing_rows(op.get_bind().dialect.name)
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


def _ledger_statuses_for_existing_rows(dialect: str) -> None:
    """Operations written by the previous version, in the ledger's terms.

    - Its keys expire a day after their operation started, like new ones.
    - A ``pending`` operation was written before any provider call, and its attempts only at
      its end: one left pending may have sent, so it is ``outcome_unknown`` and keeps its key
      (a repeat answers 409 ``operation_outcome_unknown``).
    - A ``failed`` one that ended ``no_active_provider`` or ``provider_unavailable`` sent
      nothing: its key is released. One that ended ``provider_outcome_unknown`` is
      ``outcome_unknown``.
    """
    if dialect == "sqlite":
        day_later = "strftime('%Y-%m-%d %H:%M:%f', created_at, '+1 day') || '000'"
        code = "json_extract(response, '$.code')"
    else:
        day_later = "created_at + interval '1 day'"
        code = "(response::jsonb ->> 'code')"
    op.execute(
        f"UPDATE operations SET key_expires_at = {day_later} WHERE idempotency_key IS NOT NULL"  # noqa: S608 (constants)
    )
    op.execute(
        "UPDATE operations SET status = 'outcome_unknown', completed_at = created_at"
        " WHERE status = 'pending'"
    )
    op.execute(
        "UPDATE operations SET idempotency_key = NULL WHERE status = 'failed'"  # noqa: S608
        f" AND {code} IN ('no_active_provider', 'provider_unavailable')"
    )
    op.execute(
        "UPDATE operations SET status = 'outcome_unknown' WHERE status = 'failed'"  # noqa: S608
        f" AND {code} = 'provider_outcome_unknown'"
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
