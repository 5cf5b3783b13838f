"""Settings, read from ``RELAYKIT_*`` environment variables.

=============================  ==========================================  ===================
variable                       meaning                                     default
=============================  ==========================================  ===================
``RELAYKIT_HOME``              data folder (SQLite file, keyring)          ``./.relaykit``
``RELAYKIT_DATABASE_URL``      SQLAlchemy URL of the database              SQLite in the home
``RELAYKIT_LOG_LEVEL``         log level of the ``relaykit`` loggers       ``INFO``
``RELAYKIT_MAX_BODY_BYTES``    largest request body the API reads          ``1048576``
``RELAYKIT_<NAME>_API_BASE``   a provider API's base URL (tests, staging)  the provider's own
``RELAYKIT_EMBEDDED_WORKER``   run the verification worker inside serve    ``1``
``RELAYKIT_WORKER_CONCURRENCY``  checks in flight per worker process       ``16``
``RELAYKIT_VERIFY_TIMEOUT``    seconds a provider call may take            ``10``
``RELAYKIT_VERIFY_LEASE``      seconds a claimed check is held             ``60``
``RELAYKIT_VERIFY_MAX_ATTEMPTS``  transient failures before ``error``      ``8``
``RELAYKIT_VERIFY_BACKOFF_BASE``  first retry delay cap, seconds           ``2``
``RELAYKIT_VERIFY_BACKOFF_MAX``   largest retry delay cap, seconds         ``300``
``RELAYKIT_WORKER_POLL``       seconds between polls when nothing wakes it ``1``
``RELAYKIT_OPERATION_TIMEOUT``  seconds one try of an operation may take   ``15``
``RELAYKIT_KEY_PROVIDER``      the key provider that wraps new data keys   ``local``
``RELAYKIT_READ_CACHE``        reuse hot reads until the next commit       ``1``
                               (SQLite only; docs/performance.md)
=============================  ==========================================  ===================

The lease must be longer than the provider timeout (checked at start), so a check still
running cannot lose its lease to another worker.
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
    embedded_worker: bool = True
    worker_concurrency: int = 16
    verify_timeout: float = 10.0
    verify_lease: float = 60.0
    verify_max_attempts: int = 8
    verify_backoff_base: float = 2.0
    verify_backoff_max: float = 300.0
    worker_poll: float = 1.0
    operation_timeout: float = 15.0
    key_provider: str = "local"
    read_cache: bool = True
    #: the ``RELAYKIT_<NAME>_API_BASE`` variables (only these: the rest of the environment
    #: may hold secrets and has no business in a settings object that gets printed)
    api_bases: Mapping[str, str] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.verify_lease <= self.verify_timeout:
            raise ConfigurationError(
                f"RELAYKIT_VERIFY_LEASE ({self.verify_lease:g}s) must be longer than "
                f"RELAYKIT_VERIFY_TIMEOUT ({self.verify_timeout:g}s)"
            )

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
            embedded_worker=_flag(env, "RELAYKIT_EMBEDDED_WORKER"),
            worker_concurrency=_positive_int(env, "RELAYKIT_WORKER_CONCURRENCY", 16),
            verify_timeout=_positive_float(env, "RELAYKIT_VERIFY_TIMEOUT", 10.0),
            verify_lease=_positive_float(env, "RELAYKIT_VERIFY_LEASE", 60.0),
            verify_max_attempts=_positive_int(env, "RELAYKIT_VERIFY_MAX_ATTEMPTS", 8),
            verify_backoff_base=_positive_float(env, "RELAYKIT_VERIFY_BACKOFF_BASE", 2.0),
            verify_backoff_max=_positive_float(env, "RELAYKIT_VERIFY_BACKOFF_MAX", 300.0),
            worker_poll=_positive_float(env, "RELAYKIT_WORKER_POLL", 1.0),
            operation_timeout=_positive_float(env, "RELAYKIT_OPERATION_TIMEOUT", 15.0),
            key_provider=env.get("RELAYKIT_KEY_PROVIDER") or "local",
            read_cache=_flag(env, "RELAYKIT_READ_CACHE"),
            api_bases={
                k: v
                for k, v in env.items()
                if k.startswith("RELAYKIT_") and k.endswith("_API_BASE")
            },
        )

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _flag(env: Mapping[str, str], name: str) -> bool:
    """On unless set to 0, false, no or off."""
    return env.get(name, "1").strip().lower() not in {"0", "false", "no", "off"}


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


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0 or value == float("inf"):
        raise ConfigurationError(f"{name} must be a positive number, got {raw}")
    return value
