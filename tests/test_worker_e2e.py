"""Readiness across real processes: ``relaykit serve`` and ``relaykit worker`` on one database."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from .conftest import Server, cli_env, start_server, stop_server


def wait_for(condition: Callable[[], bool], *, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting after {timeout}s")
        time.sleep(0.05)


def ready_status(server: Server) -> int:
    with server.client() as client:
        return client.get("/ready").status_code


def test_the_embedded_worker_makes_the_server_ready(home: Path, tmp_path: Path) -> None:
    server = start_server(cli_env(home), tmp_path / "server.log")
    try:
        wait_for(lambda: ready_status(server) == 200)
        with server.client() as client:
            body = client.get("/ready").json()
        assert body["data"]["status"] == "ready"
    finally:
        stop_server(server)


def test_a_worker_that_dies_without_stopping_fails_the_api_s_readiness(
    home: Path, tmp_path: Path
) -> None:
    """A killed worker deletes nothing: its heartbeat goes stale and /ready names it."""
    env = cli_env(home, {"RELAYKIT_WORKER_HEARTBEAT": "1", "RELAYKIT_WORKER_POLL": "0.2"})
    server = start_server({**env, "RELAYKIT_EMBEDDED_WORKER": "0"}, tmp_path / "server.log")
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "relaykit", "worker"], env=env, stdout=log, stderr=log
    )
    try:
        wait_for(lambda: ready_status(server) == 200)
        worker.kill()
        worker.wait()
        wait_for(lambda: ready_status(server) == 503)
        with server.client() as client:
            response = client.get("/ready")
        body = response.json()
        assert body["message"] == "Not ready: worker"
        assert body["data"]["checks"]["worker"]["error"].startswith("no heartbeat for ")
        assert httpx.get(f"{server.base_url}/health").status_code == 200  # still alive
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        log.close()
        stop_server(server)


def test_a_worker_process_serves_its_own_metrics(home: Path, tmp_path: Path) -> None:
    """``relaykit worker --metrics-port`` shows the checks that process made."""
    from prometheus_client.parser import text_string_to_metric_families

    from relaykit.settings import Settings
    from relaykit.storage.database import open_database
    from relaykit.testing.standin import stand_in

    from .conftest import free_port
    from .stripe_standin import StripeBehaviour
    from .test_scale_out import make_tenants
    from .test_verification_e2e import stripe_body

    def accepted(port: int) -> float | None:
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        except httpx.TransportError:
            return None
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "relaykit_verifications_total" and sample.labels == {
                    "provider": "stripe",
                    "outcome": "accepted",
                }:
                    return sample.value
        return 0.0

    with stand_in(StripeBehaviour()) as stripe:
        env = cli_env(
            home,
            {
                "RELAYKIT_STRIPE_API_BASE": stripe.base_url,
                "RELAYKIT_EMBEDDED_WORKER": "0",
                "RELAYKIT_WORKER_POLL": "0.2",
            },
        )
        open_database(Settings.from_env(env)).dispose()
        (token,) = make_tenants(env, 1)
        server = start_server(env, tmp_path / "server.log")
        port = free_port()
        log = (tmp_path / "worker.log").open("w")
        worker = subprocess.Popen(
            [sys.executable, "-m", "relaykit", "worker", "--metrics-port", str(port)],
            env=env,
            stdout=log,
            stderr=log,
        )
        try:
            wait_for(lambda: accepted(port) == 0.0)
            with server.api(token) as relay:
                created = relay.create_integration(**stripe_body("sk_test_good_0001"))
                wait_for(lambda: relay.get_integration(created.id).status == "active")
            assert accepted(port) == 1.0
        finally:
            worker.terminate()
            worker.wait(timeout=30)
            log.close()
            stop_server(server)
