"""Background verification end to end: server (or worker processes), database, crypto, the
real Stripe plugin, and a local stand-in of Stripe's API over real HTTP."""

from __future__ import annotations

import functools
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest

from relaykit import tenants as tenant_store
from relaykit.client import Integration
from relaykit.integrations import IntegrationService
from relaykit.keys import local_key_set
from relaykit.plugins import make_plugin_manager
from relaykit.settings import Settings
from relaykit.storage.database import open_database
from relaykit.testing.standin import StandIn, stand_in

from .conftest import Server, cli_env, run_cli, start_server, stop_server
from .stripe_standin import StripeBehaviour

T = TypeVar("T")

FAST_RETRIES = {
    "RELAYKIT_VERIFY_TIMEOUT": "1",
    "RELAYKIT_VERIFY_LEASE": "3",
    "RELAYKIT_VERIFY_BACKOFF_BASE": "0.05",
    "RELAYKIT_VERIFY_BACKOFF_MAX": "0.2",
    "RELAYKIT_WORKER_POLL": "0.2",
}


def wait_for(check: Callable[[], Any], *, timeout: float = 30.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting after {timeout}s (last: {value!r})")
        time.sleep(every)


@pytest.fixture
def stripe() -> Iterator[tuple[StandIn, StripeBehaviour]]:
    behaviour = StripeBehaviour()
    with stand_in(behaviour) as server:
        yield server, behaviour


def stripe_body(secret: str) -> dict[str, Any]:
    return {
        "provider": "stripe",
        "credentials": {"publishable_key": "pk_test_placeholder", "secret_key": secret},
        "enabled_capabilities": ["initiate_payment"],
    }


class Running:
    def __init__(self, server: Server, token: str) -> None:
        self.server = server
        self.token = token

    def create(self, secret: str) -> str:
        with self.server.api(self.token) as relay:
            return relay.create_integration(**stripe_body(secret)).id

    def get(self, integration_id: str) -> Integration:
        with self.server.api(self.token) as relay:
            return relay.get_integration(integration_id)


@pytest.fixture
def running(tmp_path: Path, stripe: tuple[StandIn, StripeBehaviour]) -> Iterator[Running]:
    home = tmp_path / "home"
    env = cli_env(home, {**FAST_RETRIES, "RELAYKIT_STRIPE_API_BASE": stripe[0].base_url})
    run_cli(["tenants", "create", "acme"], env)
    token = run_cli(["tokens", "create", "--tenant", "acme"], env).stdout.strip().splitlines()[-1]
    server = start_server(env, tmp_path / "server.log")
    try:
        yield Running(server, token)
    finally:
        stop_server(server)


def test_good_credentials_become_active(running: Running) -> None:
    integration_id = running.create("sk_test_good_0001")
    data = wait_for(lambda: (d := running.get(integration_id)).status == "active" and d)
    assert data.verified_at is not None
    assert data.metadata["verification"]["outcome"] == "accepted"
    assert "sk_test_good_0001" not in str(data)


def test_rejected_credentials_become_error_with_the_message(running: Running) -> None:
    integration_id = running.create("sk_test_bad_0002")
    data = wait_for(lambda: (d := running.get(integration_id)).status == "error" and d)
    assert data.metadata["verification"]["error"] == "Invalid API Key provided: sk_test_****0002"
    assert data.verified_at is None


def test_two_503s_then_200_becomes_active(
    running: Running, stripe: tuple[StandIn, StripeBehaviour]
) -> None:
    integration_id = running.create("sk_test_flaky_0003")
    data = wait_for(lambda: (d := running.get(integration_id)).status == "active" and d)
    assert stripe[1].seen["sk_test_flaky_0003"] == 3
    assert data.metadata["verification"]["attempts"] == 3


def test_a_provider_that_never_answers_is_transient(running: Running) -> None:
    integration_id = running.create("sk_test_hang_0004")

    def timed_out() -> Integration | None:
        data = running.get(integration_id)
        verification = data.metadata.get("verification") or {}
        return data if "did not answer in time" in verification.get("last_error", "") else None

    data = wait_for(timed_out)
    assert data.status == "pending_verify"
    assert data.metadata["verification"]["outcome"] == "transient"


def test_patching_credentials_reverifies(running: Running) -> None:
    integration_id = running.create("sk_test_bad_0005")
    wait_for(lambda: running.get(integration_id).status == "error")
    with running.server.api(running.token) as relay:
        patched = relay.update_integration(
            integration_id, credentials={"secret_key": "sk_test_good_0005"}
        )
    assert patched.status == "pending_verify"
    wait_for(lambda: running.get(integration_id).status == "active")


# -- worker processes ------------------------------------------------------------------------


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "relaykit", "worker"],
        env=env,
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
        text=True,
    )


def blocking(call: Callable[..., Awaitable[T]]) -> Callable[..., T]:
    """A service call from this (synchronous) test, on an event loop of its own."""
    return lambda *args, **kwargs: anyio.run(functools.partial(call, *args, **kwargs))


def seed(
    home: Path, env: dict[str, str], secrets: list[str]
) -> tuple[IntegrationService, list[tuple[str, str]]]:
    """One tenant and one Stripe integration per secret, made through the service (as the API
    would) while no worker runs; returns the service and the (tenant id, integration id)s."""
    settings = Settings.from_env(env)
    database = open_database(settings)
    catalog = make_plugin_manager(load_entrypoints=True, environ={}).catalog()
    service = IntegrationService(database, catalog, local_key_set(settings, database))
    made = []
    for number, secret in enumerate(secrets):
        tenant_id = database.transaction_blocking(tenant_store.create_tenant, f"tenant-{number}").id
        made.append((tenant_id, blocking(service.create)(tenant_id, stripe_body(secret)).id))
    return service, made


def test_a_worker_killed_mid_check_is_taken_over_after_its_lease(
    tmp_path: Path, stripe: tuple[StandIn, StripeBehaviour]
) -> None:
    home = tmp_path / "home"
    env = cli_env(
        home,
        {
            **FAST_RETRIES,
            "RELAYKIT_STRIPE_API_BASE": stripe[0].base_url,
            "RELAYKIT_VERIFY_TIMEOUT": "2",
            "RELAYKIT_VERIFY_LEASE": "4",
        },
    )
    secret = "sk_test_stall_once_0006"
    service, [(tenant_id, integration_id)] = seed(home, env, [secret])
    log = tmp_path / "workers.log"
    doomed = start_worker(env, log)
    try:
        wait_for(lambda: stripe[1].seen[secret] == 1)  # the first worker is mid-check
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
        killed_at = time.monotonic()
        assert blocking(service.get)(tenant_id, integration_id).status == "pending_verify"
        survivor = start_worker(env, log)
        try:
            wait_for(
                lambda: blocking(service.get)(tenant_id, integration_id).status == "active",
                timeout=30,
            )
            waited = time.monotonic() - killed_at
        finally:
            survivor.send_signal(signal.SIGTERM)
            assert survivor.wait(timeout=20) == 0
    finally:
        if doomed.poll() is None:
            doomed.kill()
    assert stripe[1].seen[secret] == 2  # the killed check, and exactly one after the reclaim
    assert waited >= 1.0  # the survivor waited for the lease (4 s from the claim) to run out
    view = blocking(service.get)(tenant_id, integration_id)
    assert view.metadata["verification"]["attempts"] == 2
    assert log.read_text().count(f"integration {integration_id} verification accepted") == 1


def test_three_workers_verify_three_hundred_integrations_exactly_once(
    tmp_path: Path, stripe: tuple[StandIn, StripeBehaviour]
) -> None:
    stripe[0].latency = 0.01
    home = tmp_path / "home"
    env = cli_env(
        home,
        {
            **FAST_RETRIES,
            "RELAYKIT_STRIPE_API_BASE": stripe[0].base_url,
            "RELAYKIT_VERIFY_TIMEOUT": "5",
            "RELAYKIT_VERIFY_LEASE": "30",
        },
    )
    secrets = [f"sk_test_good_{i:04d}" for i in range(300)]
    service, made = seed(home, env, secrets)
    ids = [integration_id for _, integration_id in made]
    log = tmp_path / "workers.log"
    workers = [start_worker(env, log) for _ in range(3)]

    def pending() -> int:
        return sum(
            blocking(service.list)(tenant_id, status="pending_verify", per_page=1).total
            for tenant_id, _ in made
        )

    try:
        wait_for(lambda: pending() == 0, timeout=120, every=0.5)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        codes = [worker.wait(timeout=30) for worker in workers]
    assert codes == [0, 0, 0]
    assert all(blocking(service.get)(t, i).status == "active" for t, i in made)
    assert all(stripe[1].seen[s] == 1 for s in secrets), "a key was checked more than once"
    assert sum(stripe[1].seen.values()) == 300
    text = log.read_text()
    assert sum(text.count(f"integration {i} verification accepted") for i in ids) == 300
    # the work was shared
    started = [
        line for line in text.splitlines() if "verification worker" in line and "started" in line
    ]
    assert len(started) == 3
