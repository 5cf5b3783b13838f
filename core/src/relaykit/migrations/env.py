"""Alembic environment: runs on the connection relaykit hands it (see relaykit.storage.schema)."""

from __future__ import annotations

from alembic import context

from relaykit.storage.models import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through 'relaykit db upgrade', which supplies a connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
