"""Key custody: the database records which key-encryption key is primary; deleted rows lose
their sealed credentials.

``encryption_keys`` lists every key relaykit has used (``primary``, ``active``, ``retired``;
a partial unique index allows one ``primary`` at most);
it is filled at the first start after this upgrade from the keys the live rows use and the
key provider's default (:mod:`relaykit.keys.custody`). Soft-deleted integrations keep their
row for history, but a deleted secret is destroyed: their sealed credentials are erased.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
ONE_PRIMARY = sa.text("state = 'primary'")


def upgrade() -> None:
    op.create_table(
        "encryption_keys",
        sa.Column("key_provider", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.String(2048), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
    )
    op.create_index(
        "uq_encryption_keys_one_primary",
        "encryption_keys",
        ["state"],
        unique=True,
        sqlite_where=ONE_PRIMARY,
        postgresql_where=ONE_PRIMARY,
    )
    op.execute(
        "UPDATE integrations SET sealed_credentials = NULL "
        "WHERE deleted_at IS NOT NULL AND sealed_credentials IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_index("uq_encryption_keys_one_primary", table_name="encryption_keys")
    op.drop_table("encryption_keys")
