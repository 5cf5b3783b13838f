from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from relaykit.settings import Settings
from relaykit.storage.database import Database, open_database
from relaykit.testing.databases import throwaway_database_url


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    with throwaway_database_url(tmp_path) as url:
        yield url


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings.from_env(
        {"RELAYKIT_HOME": str(tmp_path / "home"), "RELAYKIT_DATABASE_URL": database_url}
    )


@pytest.fixture
def database(settings: Settings) -> Iterator[Database]:
    db = open_database(settings)
    yield db
    db.dispose()
