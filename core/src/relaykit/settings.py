"""Settings, read from ``RELAYKIT_*`` environment variables.

=============================  ==========================================  ===================
variable                       meaning                                     default
=============================  ==========================================  ===================
``RELAYKIT_HOME``              data folder (SQLite file, keyring)          ``./.relaykit``
``RELAYKIT_DATABASE_URL``      SQLAlchemy URL of the database              SQLite in the home
``RELAYKIT_LOG_LEVEL``         log level of the ``relaykit`` loggers       ``INFO``
``RELAYKIT_MAX_BODY_BYTES``    largest request body the API reads          ``1048576``
``RELAYKIT_<NAME>_API_BASE``   a provider API's base URL (tests, staging)  the provider's own
=============================  ==========================================  ===================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import msgspec

from relaykit.errors import ConfigurationError

SQLITE_FILE_NAME = "relaykit.sqlite3"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    home: Path
    database_url: str
    log_level: str = "INFO"
    max_body_bytes: int = 1024 * 1024
    #: the environment provider overrides are read from (``RELAYKIT_<NAME>_API_BASE``)
    environ: Mapping[str, str] = msgspec.field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        home = Path(env.get("RELAYKIT_HOME") or ".relaykit").expanduser().absolute()
        database_url = env.get("RELAYKIT_DATABASE_URL") or f"sqlite:///{home / SQLITE_FILE_NAME}"
        return cls(
            home=home,
            database_url=database_url,
            log_level=env.get("RELAYKIT_LOG_LEVEL", "INFO").upper(),
            max_body_bytes=_positive_int(env, "RELAYKIT_MAX_BODY_BYTES", 1024 * 1024),
            environ=env,
        )

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise ConfigurationError(f"{name} must be positive, got {value}")
    return value
