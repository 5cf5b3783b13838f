"""A database of its own for each test: SQLite in a temporary folder, or, when
``RELAYKIT_TEST_DATABASE_URL`` names a PostgreSQL server (an administrative URL, as
``scripts/postgres`` prints), a fresh PostgreSQL database created for the test and dropped
after it. The same tests run on both (tox envs ``core``/``server``/``integration`` and
``postgres``). The variable is declared with the others in :mod:`relaykit.settings`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from relaykit.ids import new_id
from relaykit.settings import read_setting
from relaykit.storage.maintenance import create_database, drop_database, stored_values

ENV_VAR = "RELAYKIT_TEST_DATABASE_URL"


def server_url() -> str | None:
    url: str | None = read_setting(ENV_VAR)
    return url


@contextlib.contextmanager
def throwaway_database_url(folder: Path) -> Iterator[str]:
    admin_url = server_url()
    if admin_url is None:
        yield f"sqlite:///{folder / 'relaykit-test.sqlite3'}"
        return
    name = f"rk_test_{new_id()}"
    try:
        yield create_database(admin_url, name)
    finally:
        drop_database(admin_url, name)


def stored_text(url: str) -> bytes:
    """Every value of every table of the database at ``url``, as bytes, for leak scans."""
    return stored_values(url)
