"""``relaykit serve --workers 2`` end to end: two API processes, exactly one embedded
verification worker between them, a create served by the other process verified at once (the
wake crosses processes), ``/ready`` 200 in both, and the worker taken over when its process
dies. Real processes, the real Stripe plugin against its stand-in, real HTTP.

Which process answers a request is the kernel's choice; to ask one process, the test stops
the other (SIGSTOP) for the length of the request: only the one running can accept it.
"""

from __future__ import annotations

import os
import re
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from relaykit.settings import Settings
from relaykit.storage.database import open_database
from relaykit.testing.standin import StandIn, stand_in
from relaykit.worker_lock import LOCK_FILE_NAME, SOCKET_FILE_NAME

from .conftest import Server, cli_env, run_cli, start_server, stop_server
from .stripe_standin import StripeBehaviour
from .test_verification_e2e import stripe_body, wait_for

pytestmark = pytest.mark.slow

#: The worker polls every 30 s (its heartbeat interval is long enough not to cut that short),
#: so only a wake explains a create verified within a few seconds.
SLOW_POLL = {"RELAYKIT_WORKER_POLL": "30", "RELAYKIT_WORKER_HEARTBEAT": "60"}
#: Seconds a create may take to become active when the worker is woken: far under the poll.
WOKEN_WITHIN = 5.0


@pytest.fixture
def home() -> Iterator[Path]:
    """A home short enough for the wake socket's path (AF_UNIX allows 107 bytes; pytest's
    tmp_path can be longer)."""
    with tempfile.TemporaryDirectory(prefix="rk-") as folder:
        yield Path(folder) / "home"


@pytest.fixture
def stripe() -> Iterator[StandIn]:
    with stand_in(StripeBehaviour()) as server:
        yield server


class Processes:
    """The running server, its two API processes' pids, and its database."""

    def __init__(self, server: Server, env: dict[str, str], token: str) -> None:
        self.server = server
        self.env = env
        self.token = token
        self.database = open_database(Settings.from_env(env), migrate=False)

    def pids(self) -> list[int]:
        """The API processes started so far (uvicorn logs each one's pid), in order."""
        return [int(pid) for pid in re.findall(r"Started server process \[(\d+)\]", self.log())]

    def log(self) -> str:
        return self.server.log.read_text()

    def worker_pids(self) -> list[int]:
        """The pid in the owner of every heartbeat row (``host:pid:suffix``)."""
        rows = self.database.read_blocking(
            lambda conn: conn.execute(sa.text("SELECT owner FROM worker_heartbeats")).all()
        )
        return sorted(int(owner.split(":")[-2]) for (owner,) in rows)

    @contextmanager
    def only(self, pid: int) -> Iterator[None]:
        """Every other API process stopped (SIGSTOP) for the block: ``pid`` answers."""
        others = [other for other in self.live() if other != pid]
        for other in others:
            os.kill(other, signal.SIGSTOP)
        try:
            yield
        finally:
            for other in others:
                os.kill(other, signal.SIGCONT)

    def live(self) -> list[int]:
        alive = []
        for pid in self.pids():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            alive.append(pid)
        return alive

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request on a connection of its own (so whichever process runs may take it)."""
        with httpx.Client(
            base_url=self.server.base_url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        ) as client:
            return client.request(method, path, **kwargs)

    def create(self, secret: str) -> str:
        made = self.request("POST", "/api/v1/integrations", json=stripe_body(secret))
        assert made.status_code == 201, made.text
        return str(made.json()["data"]["id"])

    def status(self, integration_id: str) -> str:
        return str(
            self.request("GET", f"/api/v1/integrations/{integration_id}").json()["data"]["status"]
        )

    def delete(self, integration_id: str) -> None:
        assert self.request("DELETE", f"/api/v1/integrations/{integration_id}").status_code == 200

    def created_and_verified_through(self, pid: int, secret: str) -> None:
        """A create that process ``pid`` serves is verified well within the worker's poll
        interval; then it is deleted (the next create of the provider is a new one)."""
        with self.only(pid):
            integration_id = self.create(secret)
        created_at = time.monotonic()
        wait_for(lambda: self.status(integration_id) == "active", timeout=WOKEN_WITHIN * 4)
        assert time.monotonic() - created_at < WOKEN_WITHIN, pid
        self.delete(integration_id)

    def workers_started(self) -> int:
        return len(re.findall(r"relaykit\.worker: verification worker \S+ started", self.log()))


@pytest.fixture
def processes(tmp_path: Path, home: Path, stripe: StandIn) -> Iterator[Processes]:
    # RELAYKIT_WORKERS says 1: --workers on the command line wins
    env = cli_env(
        home,
        {**SLOW_POLL, "RELAYKIT_WORKERS": "1", "RELAYKIT_STRIPE_API_BASE": stripe.base_url},
    )
    run_cli(["tenants", "create", "acme"], env)
    token = run_cli(["tokens", "create", "--tenant", "acme"], env).stdout.strip().splitlines()[-1]
    server = start_server(env, tmp_path / "server.log", workers=2)
    running = Processes(server, env, token)
    try:
        wait_for(lambda: len(running.pids()) == 2 and running.log().count("startup complete") == 2)
        yield running
    finally:
        for pid in running.live():  # never leave one stopped
            os.kill(pid, signal.SIGCONT)
        stop_server(server)
        running.database.dispose()
    assert "Traceback" not in running.log()
    # a clean stop takes the wake socket away; the lock file stays (it is only ever locked)
    assert not (home / SOCKET_FILE_NAME).exists()
    assert (home / LOCK_FILE_NAME).exists()


def test_two_processes_run_one_worker_and_either_one_gets_creates_verified_at_once(
    processes: Processes,
) -> None:
    assert "2 API processes (from --workers)" in processes.log()
    first, second = processes.pids()
    # exactly one process runs the embedded worker: one heartbeat row, one worker started,
    # and the other process says it waits for the lock
    (holder,) = wait_for(processes.worker_pids)
    assert holder in (first, second)
    other = second if holder == first else first
    waiting = "the verification worker runs in another process of this server"
    wait_for(lambda: waiting in processes.log())
    assert processes.workers_started() == 1
    assert processes.log().count(waiting) == 1

    # both processes answer, and both are ready: the holder on its own worker's heartbeat,
    # the other on the holder's
    for pid in (holder, other):
        with processes.only(pid):
            ready = processes.request("GET", "/ready")
        assert ready.status_code == 200, (pid, ready.text)
        assert ready.json()["data"]["status"] == "ready"

    # a create served by the process without the worker is verified at once, though the
    # worker polls every 30 s: the wake reached the other process through the socket; and
    # one served by the holder itself (woken in its own process)
    processes.created_and_verified_through(other, "sk_test_good_0101")
    processes.created_and_verified_through(holder, "sk_test_good_0102")
    assert processes.worker_pids() == [holder]  # still one worker
    assert processes.workers_started() == 1


def test_when_the_worker_process_dies_another_takes_the_worker_over(
    processes: Processes,
) -> None:
    (holder,) = wait_for(processes.worker_pids)
    os.kill(holder, signal.SIGKILL)  # no clean stop: its heartbeat row stays until stale

    def taken_over() -> list[int]:
        return [pid for pid in processes.worker_pids() if pid != holder]

    # the survivor tries the lock every second, and uvicorn starts a process in the dead
    # one's place: one of the two runs the worker, never both
    (successor,) = wait_for(taken_over, timeout=30)
    assert successor in processes.live()
    wait_for(lambda: len(processes.pids()) == 3)  # the replacement
    wait_for(lambda: processes.log().count("startup complete") == 3)
    assert taken_over() == [successor]
    assert processes.workers_started() == 2  # the dead one's and its successor's

    # every live process is ready, and creates it serves are verified at once again
    live = processes.live()
    assert len(live) == 2
    for number, pid in enumerate(live):
        with processes.only(pid):
            assert processes.request("GET", "/ready").status_code == 200
        processes.created_and_verified_through(pid, f"sk_test_good_020{number}")
