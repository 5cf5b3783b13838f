"""Bringing a database's schema to the newest migration, safely from several processes.

Every process that opens the database runs :func:`upgrade` (the embedded default migrates on
first start; ``relaykit db upgrade`` does it on purpose). The whole upgrade runs in one
transaction that first takes a lock (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a
transaction-scoped advisory lock), so processes starting together migrate once and the
others find the schema current.
"""

from __future__ import annotations

from importlib.resources import files

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from relaykit.storage.database import Database

#: An arbitrary 64-bit key for pg_advisory_xact_lock: "relaykit" in ASCII.
_MIGRATION_LOCK_KEY = 0x72656C61796B6974


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("relaykit") / "migrations"))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(database: Database) -> str | None:
    with database.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(database: Database, revision: str = "head") -> None:
    config = alembic_config()

    def run(conn: sa.Connection) -> None:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK_KEY)))
        config.attributes["connection"] = conn
        command.upgrade(config, revision)

    database.transaction_blocking(run)
