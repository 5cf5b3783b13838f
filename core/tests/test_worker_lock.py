"""relaykit.worker_lock: one embedded worker among the processes that share a home.

Two :class:`Services` in this process stand for two processes of ``relaykit serve --workers
2``: each opens the lock file itself, and a ``flock`` belongs to an open file, so they shut
each other out exactly as two processes do. Real database, real lock file, real socket;
``tests/test_serve_processes.py`` runs the real processes.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import pytest
import sqlalchemy as sa

from relaykit import tenants as tenant_store
from relaykit.plugins import RelaykitPluginManager, make_plugin_manager
from relaykit.services import Services
from relaykit.settings import Settings
from relaykit.storage.database import Database, open_database
from relaykit.worker_lock import (
    LOCK_FILE_NAME,
    MAX_SOCKET_PATH_BYTES,
    SOCKET_FILE_NAME,
    socket_address,
    try_lock,
)

from .providers_for_tests import OneProvider, make_provider

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the worker runs on asyncio (as uvicorn serves it)


#: The worker polls every 30 s: only a wake explains a create verified within seconds.
SLOW_POLL = {"RELAYKIT_WORKER_POLL": "30", "RELAYKIT_WORKER_HEARTBEAT": "60"}


@pytest.fixture
def home() -> Iterator[Path]:
    """A home short enough for the socket's path (pytest's tmp_path can be too long)."""
    with tempfile.TemporaryDirectory(prefix="rk-") as folder:
        yield Path(folder) / "home"


def plugins() -> RelaykitPluginManager:
    return make_plugin_manager(
        load_entrypoints=False, plugins=[("acme", OneProvider(make_provider()))]
    )


def configure(home: Path, database_url: str) -> Settings:
    return Settings.from_env(
        {"RELAYKIT_HOME": str(home), "RELAYKIT_DATABASE_URL": database_url, **SLOW_POLL}
    )


async def eventually(condition: Callable[[], Awaitable[bool] | bool], timeout: float = 10) -> None:
    with anyio.fail_after(timeout):
        while True:
            value = condition()
            if not isinstance(value, bool):
                value = await value
            if value:
                return
            await anyio.sleep(0.02)


def heartbeat_owners(database: Database) -> list[str]:
    return sorted(
        owner
        for (owner,) in database.read_blocking(
            lambda conn: conn.execute(sa.text("SELECT owner FROM worker_heartbeats")).all()
        )
    )


def watched(services: Services) -> str | None:
    """The worker whose heartbeat the services' ``/ready`` watches now."""
    owner = services._readiness.worker_owner
    return owner() if callable(owner) else owner


def test_two_opens_in_one_process_exclude_each_other(tmp_path: Path) -> None:
    path = tmp_path / LOCK_FILE_NAME
    first = try_lock(path)
    assert first is not None
    assert try_lock(path) is None  # another open file description: refused, not blocked
    os.close(first)
    second = try_lock(path)
    assert second is not None
    os.close(second)


def test_the_lock_of_a_process_that_dies_is_free(tmp_path: Path) -> None:
    path = tmp_path / LOCK_FILE_NAME
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; "
            "from relaykit.worker_lock import try_lock; "
            "assert try_lock(Path(sys.argv[1])) is not None; print('held', flush=True); "
            "time.sleep(60)",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert try_lock(path) is None
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    fd = try_lock(path)  # the kernel released it with the process: nothing to clean up
    assert fd is not None
    os.close(fd)


def test_a_socket_path_too_long_for_af_unix_means_none() -> None:
    assert socket_address(Path("/tmp/x")) == b"/tmp/x"
    assert socket_address(Path("/" + "a" * (MAX_SOCKET_PATH_BYTES - 1))) is not None
    assert socket_address(Path("/" + "a" * MAX_SOCKET_PATH_BYTES)) is None


async def test_one_of_two_runs_the_worker_the_other_wakes_it_and_takes_over(
    home: Path, database_url: str
) -> None:
    settings = configure(home, database_url)
    first = Services.open(settings, plugins(), shared_worker=True)
    second = Services.open(settings, plugins(), shared_worker=True)
    database = open_database(settings, migrate=False)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(first.run_worker)
            group.start_soon(second.run_worker)
            assert first.shared_worker is not None and second.shared_worker is not None
            shared = (first.shared_worker, second.shared_worker)
            await eventually(lambda: any(s.holding for s in shared))
            holder, other = (first, second) if shared[0].holding else (second, first)
            assert holder.worker is not None and other.worker is not None
            await eventually(lambda: heartbeat_owners(database) == [holder.worker.owner])
            await anyio.sleep(0.3)  # the other has tried the lock by now, and failed
            assert not (other.shared_worker and other.shared_worker.holding)
            assert (home / SOCKET_FILE_NAME).is_socket()

            # /ready: the holder watches its own worker, the other any fresh heartbeat
            assert watched(holder) == holder.worker.owner
            assert watched(other) is None
            assert (await holder._readiness.check_worker()).ok
            assert (await other._readiness.check_worker()).ok

            # a create through the process without the worker: the holder's worker is woken
            tenant_id = database.transaction_blocking(tenant_store.create_tenant, "acme").id
            made = await other.integrations.create(
                tenant_id,
                {
                    "provider": "acme",
                    "credentials": {"api_key": "key-0001", "account": "a1"},
                    "enabled_capabilities": ["send_sms"],
                },
            )

            async def active() -> bool:
                return (await other.integrations.get(tenant_id, made.id)).status == "active"

            await eventually(active, timeout=5)
            await eventually(lambda: holder.worker.stats["active"] == 1)  # counted after
            assert other.worker.stats["claimed"] == 0

            # the holder stops: the other takes the lock (within a second), the socket and
            # the worker, and /ready there watches its own worker now
            await holder.aclose()
            await eventually(lambda: bool(other.shared_worker and other.shared_worker.holding))
            await eventually(lambda: other.worker.owner in heartbeat_owners(database))
            assert watched(other) == other.worker.owner
            assert holder.worker.owner not in heartbeat_owners(database)  # a clean stop
            assert (home / SOCKET_FILE_NAME).is_socket()
            await other.aclose()
        assert heartbeat_owners(database) == []  # both stopped cleanly
    finally:
        first.dispose()
        second.dispose()
        database.dispose()
    assert not (home / SOCKET_FILE_NAME).exists()


async def test_a_home_too_deep_for_the_socket_runs_the_worker_without_it(
    home: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    deep = home / ("d" * MAX_SOCKET_PATH_BYTES)
    settings = configure(deep, database_url)
    services = Services.open(settings, plugins(), shared_worker=True)
    database = open_database(settings, migrate=False)
    try:
        with caplog.at_level(logging.WARNING, logger="relaykit.worker"):
            async with anyio.create_task_group() as group:
                group.start_soon(services.run_worker)
                assert services.worker is not None
                owner = services.worker.owner
                await eventually(lambda: heartbeat_owners(database) == [owner])
                await services.aclose()
    finally:
        services.dispose()
        database.dispose()
    assert not (deep / SOCKET_FILE_NAME).exists()
    assert any("no wake socket" in record.getMessage() for record in caplog.records)


async def test_stopped_before_it_got_the_lock_it_never_starts_the_worker(
    home: Path, database_url: str
) -> None:
    settings = configure(home, database_url)
    services = Services.open(settings, plugins(), shared_worker=True)
    try:
        await services.aclose()
        with anyio.fail_after(5):
            await services.run_worker()  # returns at once
        assert services.shared_worker is not None and not services.shared_worker.holding
    finally:
        services.dispose()
