from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from relaykit.settings import Settings
from relaykit.storage.database import Database, open_database


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"RELAYKIT_HOME": str(tmp_path / "home")})


@pytest.fixture
def database(settings: Settings) -> Iterator[Database]:
    db = open_database(settings)
    yield db
    db.dispose()
