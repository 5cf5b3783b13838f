"""A database of its own for each test: SQLite in a temporary folder, or, when
``RELAYKIT_TEST_DATABASE_URL`` names a PostgreSQL server (an administrative URL, as
``scripts/postgres`` prints), a fresh PostgreSQL database created for the test and dropped
after it. The same tests run on both (tox envs ``core``/``server``/``integration`` and
``postgres``)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from relaykit.ids import new_id

ENV_VAR = "RELAYKIT_TEST_DATABASE_URL"


def server_url() -> str | None:
    return os.environ.get(ENV_VAR) or None


@contextlib.contextmanager
def throwaway_database_url(folder: Path) -> Iterator[str]:
    admin_url = server_url()
    if admin_url is None:
        yield f"sqlite:///{folder / 'relaykit-test.sqlite3'}"
        return
    name = f"rk_test_{new_id()}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def stored_text(url: str) -> bytes:
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
