"""The multi-node shape: several API processes and several worker processes on one database.

Runs on whichever database the suite runs on; the tox 'postgres' env is the one that
matters (FOR UPDATE SKIP LOCKED, the unique index under real concurrency).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from relaykit import tenants as tenant_store
from relaykit.client import InvalidRequest
from relaykit.settings import Settings
from relaykit.storage.database import open_database
from relaykit.testing.standin import StandIn, stand_in

from .conftest import Server, cli_env, start_server, stop_server
from .stripe_standin import StripeBehaviour
from .test_verification_e2e import stripe_body, wait_for

pytestmark = pytest.mark.slow


class Cluster:
    def __init__(
        self, apis: list[Server], workers: list[subprocess.Popen[str]], env: dict[str, str]
    ):
        self.apis = apis
        self.workers = workers
        self.env = env


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Cluster, StandIn, StripeBehaviour]]:
    behaviour = StripeBehaviour()
    with stand_in(behaviour, latency=0.005) as stripe:
        env = cli_env(
            tmp_path / "home",
            {
                "RELAYKIT_STRIPE_API_BASE": stripe.base_url,
                "RELAYKIT_EMBEDDED_WORKER": "0",  # API processes serve; workers verify
                "RELAYKIT_WORKER_POLL": "0.2",
            },
        )
        open_database(Settings.from_env(env)).dispose()  # migrate once, before the crowd
        apis = [start_server(env, tmp_path / f"api-{n}.log") for n in range(2)]
        log = tmp_path / "workers.log"
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "relaykit", "worker"],
                env=env,
                stdout=log.open("a"),
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(2)
        ]
        try:
            yield Cluster(apis, workers, env), stripe, behaviour
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            for worker in workers:
                try:
                    worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    worker.kill()
            for api in apis:
                stop_server(api)


def make_tenants(env: dict[str, str], count: int) -> list[str]:
    database = open_database(Settings.from_env(env))
    tokens = []
    for number in range(count):
        database.transaction_blocking(tenant_store.create_tenant, f"tenant-{number}")
        tokens.append(
            database.transaction_blocking(tenant_store.create_token, f"tenant-{number}")[1]
        )
    database.dispose()
    return tokens


def test_two_apis_two_workers_two_hundred_integrations(
    cluster: tuple[Cluster, StandIn, StripeBehaviour],
) -> None:
    nodes, _, behaviour = cluster
    tokens = make_tenants(nodes.env, 200)

    def create(number: int) -> tuple[str, str]:
        api = nodes.apis[number % 2]  # alternate between the two API processes
        with api.api(tokens[number]) as relay:
            created = relay.create_integration(**stripe_body(f"sk_test_good_{number:04d}"))
            return tokens[number], created.id

    with ThreadPoolExecutor(max_workers=16) as pool:
        made = list(pool.map(create, range(200)))

    def status(token: str, integration_id: str, api: Server) -> str:
        with api.api(token) as relay:
            return relay.get_integration(integration_id).status

    def all_active() -> bool:
        return all(status(t, i, nodes.apis[n % 2]) == "active" for n, (t, i) in enumerate(made))

    wait_for(all_active, timeout=120, every=0.5)
    assert len(behaviour.seen) == 200
    assert set(behaviour.seen.values()) == {1}, "an integration was verified more than once"
    # each API process sees what the other wrote
    for number, (token, integration_id) in enumerate(made[:20]):
        assert status(token, integration_id, nodes.apis[(number + 1) % 2]) == "active"


def test_fifty_duplicate_creates_across_both_apis_give_one(
    cluster: tuple[Cluster, StandIn, StripeBehaviour],
) -> None:
    nodes, _, _ = cluster
    [token] = make_tenants(nodes.env, 1)

    def create(number: int) -> InvalidRequest | None:
        """None when this one was created; the 422 when it was refused."""
        with nodes.apis[number % 2].api(token, timeout=60) as relay:
            try:
                relay.create_integration(**stripe_body("sk_test_good_dupe"))
            except InvalidRequest as refused:
                return refused
        return None

    with ThreadPoolExecutor(max_workers=50) as pool:
        outcomes = list(pool.map(create, range(50)))
    assert outcomes.count(None) == 1
    assert [refused.errors for refused in outcomes if refused is not None] == [
        {"provider": ["An integration for this provider already exists."]}
    ] * 49
    with nodes.apis[0].api(token) as relay:
        assert relay.list_integrations().meta.total == 1
