"""Cross-package tests: every distribution installed, real processes, real HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from relaykit.client import Client
from relaykit.testing.databases import throwaway_database_url

REPO = Path(__file__).resolve().parents[1]


def cli_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a relaykit process under test: this test's home and database
    (set by the autouse ``database_url`` fixture), no other RELAYKIT_* setting leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYKIT_")}
    env["RELAYKIT_HOME"] = str(home)
    env["RELAYKIT_DATABASE_URL"] = os.environ.get(
        "RELAYKIT_DATABASE_URL", f"sqlite:///{home / 'relaykit.sqlite3'}"
    )
    env.update(extra or {})
    return env


def run_cli(
    args: list[str], env: Mapping[str, str], *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "relaykit", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"relaykit {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def pip_install_into(project: Path, target: Path) -> None:
    """Build and install a package into a private site folder (put it on PYTHONPATH for the
    processes under test), leaving the test environment itself as it was."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(project),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"pip install failed:\n{result.stdout}\n{result.stderr}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, base_url: str, process: subprocess.Popen[str], log: Path) -> None:
        self.base_url = base_url
        self.process = process
        self.log = log

    def client(self, token: str | None = None) -> httpx.Client:
        """A raw httpx client, for the tests about the wire itself (exact bodies, headers,
        malformed requests, odd tokens); the rest drive the API through :meth:`api`."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=10)

    def api(
        self,
        token: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> Client:
        """relaykit.client's :class:`Client` for this server, as ``token``'s tenant (a
        :class:`Recorder` as ``transport`` keeps the answers as they came over the wire)."""
        return Client(self.base_url, token, timeout=timeout, transport=transport)


class Recorder(httpx.HTTPTransport):
    """An httpx transport that keeps every answer it carries, read, in ``responses``: for a
    test that drives the API through relaykit.client and checks what came over the wire
    (the bytes, the exact status) underneath it."""

    def __init__(self) -> None:
        super().__init__()
        self.responses: list[httpx.Response] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        response.read()
        self.responses.append(response)
        return response


def start_server(
    env: Mapping[str, str], log: Path, *, port: int | None = None, workers: int = 1
) -> Server:
    """``relaykit serve`` in a process of its own with ``env``, once it answers /health. One
    API process unless a test asks for more (serve's own default is one per core, which would
    make every test's server as many processes as the machine has cores)."""
    port = port or free_port()
    out = log.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "relaykit", "serve", "--port", str(port), "--workers", str(workers)],
        env=dict(env),
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return Server(base, process, log)
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError(f"server did not come up:\n{log.read_text()}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(autouse=True)
def database_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with throwaway_database_url(tmp_path) as url:
        monkeypatch.setenv("RELAYKIT_DATABASE_URL", url)
        yield url


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def server(home: Path, tmp_path: Path) -> Iterator[Server]:
    running = start_server(cli_env(home), tmp_path / "server.log")
    try:
        yield running
    finally:
        stop_server(running)


def start_public_server(
    env: Mapping[str, str], log: Path, *, public_url: str | None = None
) -> Server:
    """A server whose ``RELAYKIT_PUBLIC_URL`` is its own base URL, so the providers' status
    callbacks (and the URLs their signatures cover) come straight back to it; or
    ``public_url``, to play a proxy in front (the URL providers call and sign is then not
    the one the server listens on). The port is chosen first: the setting must name it."""
    port = free_port()
    public = public_url or f"http://127.0.0.1:{port}"
    return start_server({**env, "RELAYKIT_PUBLIC_URL": public}, log, port=port)
