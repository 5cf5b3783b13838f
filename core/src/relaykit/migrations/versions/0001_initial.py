"""Tenants, API tokens and integrations.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Migrations spell out plain column types: they must keep producing the same schema when
# the application's types change later.
ID = sa.String(26)


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", ID, primary_key=True),
        sa.Column("tenant_id", ID, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("label", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "integrations",
        sa.Column("id", ID, primary_key=True),
        sa.Column("tenant_id", ID, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("provider", sa.String(63), nullable=False),
        sa.Column("category", sa.String(63), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("enabled_capabilities", sa.JSON(), nullable=False),
        sa.Column("public_credentials", sa.JSON(), nullable=False),
        sa.Column("sealed_credentials", sa.LargeBinary(), nullable=True),
        sa.Column("credentials_version", sa.Integer(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("verification", sa.JSON(), nullable=True),
        sa.Column("verify_attempts", sa.Integer(), nullable=False),
        sa.Column("next_verify_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_integrations_tenant_id_id", "integrations", ["tenant_id", "id"])
    op.create_index(
        "ix_integrations_verify_queue",
        "integrations",
        ["next_verify_at"],
        sqlite_where=sa.text("status = 'pending_verify' AND deleted_at IS NULL"),
        postgresql_where=sa.text("status = 'pending_verify' AND deleted_at IS NULL"),
    )
    op.create_index(
        "uq_integrations_tenant_provider_live",
        "integrations",
        ["tenant_id", "provider"],
        unique=True,
        sqlite_where=sa.text("deleted_at IS NULL"),
        postgresql_where=sa.text("deleted_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("integrations")
    op.drop_table("api_tokens")
    op.drop_table("tenants")
