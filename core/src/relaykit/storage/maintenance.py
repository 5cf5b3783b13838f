"""Statements on a database server as a whole, for tooling and tests: making and dropping a
PostgreSQL database, and reading every stored value (leak scans)."""

from __future__ import annotations

import sqlalchemy as sa


def create_database(admin_url: str, name: str) -> str:
    """Create the PostgreSQL database ``name`` on ``admin_url``'s server; its URL."""
    _outside_transactions(admin_url, f'CREATE DATABASE "{name}"')
    return sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, name: str) -> None:
    """Drop the PostgreSQL database ``name``, closing its connections."""
    _outside_transactions(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _outside_transactions(admin_url: str, statement: str) -> None:
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(statement)
    finally:
        admin.dispose()


def stored_values(url: str) -> bytes:
    """Every value of every table of the database at ``url``, as bytes, for leak scans."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    chunks: list[bytes] = []
    try:
        with engine.connect() as conn:
            for table in sa.inspect(conn).get_table_names():
                for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):  # noqa: S608
                    for value in row:
                        chunks.append(value if isinstance(value, bytes) else str(value).encode())
    finally:
        engine.dispose()
    return b"\n".join(chunks)
