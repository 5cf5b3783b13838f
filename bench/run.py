"""relaykit's benchmarks, one command: ``python bench/run.py [--output bench/results.json]``.

Every figure is a ratio or a difference measured in the same run (these machines are shared
and noisy); docs/performance.md explains each and records a run. Needs ``wrk`` (Debian's
package; installed with apt-get when missing and running as root).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from relaykit import tenants as tenant_store
from relaykit.ids import new_id, utcnow
from relaykit.integrations import IntegrationService
from relaykit.keys import local_key_set
from relaykit.plugins import make_plugin_manager
from relaykit.settings import Settings
from relaykit.storage.database import open_database
from relaykit.storage.maintenance import create_database
from relaykit.storage.models import delivery_attempts, integrations, operations, webhook_events
from server import BenchProviders, sign

HERE = Path(__file__).resolve().parent
CREATE_LUA = HERE / "create.lua"
WEBHOOK_LUA = HERE / "webhook.lua"
WRITE_LOAD = HERE / "write_load.py"
POSTGRES_SCRIPT = HERE.parent / "scripts" / "postgres"
PROVIDERS = 25
#: distinct signed webhooks made for the webhook figure, each about an attempt of its own
#: (more than a run of --seconds can send: a repeat would be a duplicate, not applied)
WEBHOOKS = 60_000
#: creates per second of the write load the list is measured under (open loop)
LOAD_RATE = 50
#: connections of the many-connections figure (wrk -t1: one client thread leaves the cores
#: to the server's processes; one thread drives 256 connections with epoll)
MANY_CONNECTIONS = 256


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, capture_output=True)
        found = shutil.which("wrk")
    if not found:
        sys.exit("bench needs wrk: apt-get install wrk")
    return found


# -- seeding ---------------------------------------------------------------------------------


def seed(
    home: Path,
    *,
    deleted: int = 0,
    create_tenants: int = 0,
    load_tenants: int = 0,
    database_url: str | None = None,
) -> dict[str, Any]:
    """A tenant 'bench' with one live integration per bench provider (25), ``deleted``
    soft-deleted ones in its history, ``create_tenants`` more tenants with tokens (for
    bench/create.lua) and ``load_tenants`` others (for bench/write_load.py), in the database
    at ``database_url`` (default: SQLite in ``home``)."""
    env = {"RELAYKIT_HOME": str(home)}
    if database_url:
        env["RELAYKIT_DATABASE_URL"] = database_url
    settings = Settings.from_env(env)
    database = open_database(settings)
    pm = make_plugin_manager(plugins=[("bench", BenchProviders())], environ={})
    catalog = pm.catalog()
    keys = local_key_set(settings, database)
    service = IntegrationService(database, catalog, keys)
    tenant_id = database.transaction_blocking(tenant_store.create_tenant, "bench").id
    token = database.transaction_blocking(tenant_store.create_token, "bench")[1]

    async def create_live() -> list[str]:
        return [
            (
                await service.create(
                    tenant_id,
                    {
                        "provider": f"bench{n:02d}",
                        "credentials": {"api_key": f"key-{n}-secret", "sender": "+15550100000"},
                        "enabled_capabilities": ["send_sms"],
                    },
                )
            ).id
            for n in range(1, PROVIDERS + 1)
        ]

    live = anyio.run(create_live)
    now = utcnow()
    batch: list[dict[str, Any]] = []
    for number in range(deleted):
        integration_id = new_id()
        provider = f"bench{number % PROVIDERS + 1:02d}"
        batch.append(
            {
                "id": integration_id,
                "tenant_id": tenant_id,
                "provider": provider,
                "category": "communication",
                "status": "active",
                "enabled_capabilities": ["send_sms"],
                "public_credentials": {"sender": "+15550100000"},
                # a deleted integration's secret is erased with the delete (docs/security.md)
                "sealed_credentials": None,
                "credentials_version": 1,
                "metadata": {},
                "verification": None,
                "verify_attempts": 0,
                "next_verify_at": None,
                "verified_at": now,
                "created_at": now,
                "updated_at": now,
                "deleted_at": now,
            }
        )
        if len(batch) == 5000:
            database.transaction_blocking(insert_rows, batch)
            batch = []
    if batch:
        database.transaction_blocking(insert_rows, batch)

    def make(conn: sa.Connection, prefix: str, count: int) -> list[str]:
        made = []
        for number in range(count):
            tenant_store.create_tenant(conn, f"{prefix}{number}")
            made.append(tenant_store.create_token(conn, f"{prefix}{number}")[1])
        return made

    tokens = database.transaction_blocking(make, "c", create_tenants) if create_tenants else []
    load_tokens = database.transaction_blocking(make, "w", load_tenants) if load_tenants else []
    database.transaction_blocking(
        lambda conn: conn.execute(
            integrations.update().where(integrations.c.id.in_(live)).values(status="active")
        )
    )
    database.dispose()
    return {
        "token": token,
        "live": live,
        "tokens": tokens,
        "load_tokens": load_tokens,
        "tenant_id": tenant_id,
    }


def seed_webhooks(home: Path, tenant_id: str, integration_id: str, count: int) -> Path:
    """``count`` sent messages of ``integration_id`` (an operation and a succeeded attempt
    each, provider object ids ``wh-<n>``) and a file of as many distinct signed ``delivered``
    events, one about each, for bench/webhook.lua. The bench providers' webhook secret is
    the integration's ``api_key`` (``key-1-secret`` for the first)."""
    database = open_database(Settings.from_env({"RELAYKIT_HOME": str(home)}))
    now = utcnow()
    lines = []
    ops: list[dict[str, Any]] = []
    attempts: list[dict[str, Any]] = []
    for number in range(count):
        operation_id = new_id()
        ops.append(
            {
                "id": operation_id,
                "tenant_id": tenant_id,
                "capability": "send_sms",
                "status": "succeeded",
                "integration_id": integration_id,
                "request_hash": "bench",
                "created_at": now,
                "completed_at": now,
            }
        )
        attempts.append(
            {
                "id": new_id(),
                "tenant_id": tenant_id,
                "operation_id": operation_id,
                "integration_id": integration_id,
                "provider": "bench01",
                "capability": "send_sms",
                "status": "succeeded",
                "outcome": "succeeded",
                "message": "OK",
                "started_at": now,
                "completed_at": now,
                "provider_object_id": f"wh-{number}",
            }
        )
        body = msgspec.json.encode(
            {"id": f"ev-{number}", "object": f"wh-{number}", "status": "delivered"}
        )
        lines.append(f"/webhooks/{integration_id}\t{sign('key-1-secret', body)}\t{body.decode()}")

    def insert(conn: sa.Connection) -> None:
        for start in range(0, count, 5000):
            conn.execute(operations.insert(), ops[start : start + 5000])
            conn.execute(delivery_attempts.insert(), attempts[start : start + 5000])

    database.transaction_blocking(insert)
    database.dispose()
    path = home / "webhooks.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


def applied_webhooks(home: Path) -> int:
    """How many stored webhook events moved an attempt."""
    database = open_database(Settings.from_env({"RELAYKIT_HOME": str(home)}), migrate=False)
    try:
        return int(
            database.read_blocking(
                lambda conn: conn.execute(
                    sa.select(sa.func.count()).where(webhook_events.c.applied.is_(True))
                ).scalar_one()
            )
        )
    finally:
        database.dispose()


def insert_rows(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    conn.execute(integrations.insert(), rows)


class Server:
    """bench/server.py on a free port: one process, or ``workers`` of them (uvicorn's
    supervisor and its workers, as ``relaykit serve --workers``)."""

    def __init__(self, home: Path, extra_env: dict[str, str], *, workers: int = 1) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYKIT_")}
        env.update(
            {
                "RELAYKIT_HOME": str(home),
                "RELAYKIT_EMBEDDED_WORKER": "0",
                "RELAYKIT_LOG_LEVEL": "WARNING",
                "BENCH_CEILING_FILE": str(home / "ceiling.json"),
            }
        )
        env.update(extra_env)
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "server.py"), str(self.port), f"--workers={workers}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(300):
            try:
                if httpx.get(f"{self.base}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("bench server did not start")

    def rss_mb(self) -> float:
        """The RSS of the server's own process (with workers: of the supervisor only)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


# -- measuring ---------------------------------------------------------------------------------


#: wrk's time units (its Latency Distribution prints e.g. ``99%  123.45ms``)
WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def wrk_ms(text: str) -> float:
    """A wrk duration (``812.00us``, ``12.34ms``, ``1.02s``, ``2.00m``) in milliseconds."""
    number, unit = re.fullmatch(r"([\d.]+)([a-z]+)", text).groups()  # type: ignore[union-attr]
    return float(number) * WRK_UNITS[unit]


def wrk(
    url: str,
    *,
    seconds: int,
    headers: dict[str, str] | None = None,
    script: Path | None = None,
    env: dict[str, str] | None = None,
    connections: int = 16,
) -> dict[str, float]:
    """One wrk run (one thread): requests/s, non-2xx answers, requests, p50 and p99 latency
    (ms) and socket errors (connect, read, write, timeout: wrk's 2 s timeout)."""
    command = [ensure_wrk(), "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for key, value in (headers or {}).items():
        command += ["-H", f"{key}: {value}"]
    if script:
        command += ["-s", str(script)]
    out = subprocess.run(
        [*command, url],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sent = re.search(r"(\d+) requests in", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    p50 = re.search(r"^\s*50%\s+(\S+)", out, re.MULTILINE)
    p99 = re.search(r"^\s*99%\s+(\S+)", out, re.MULTILINE)
    return {
        "rps": rps,
        "non_2xx": int(bad.group(1)) if bad else 0,
        "requests": int(sent.group(1)) if sent else 0,
        "socket_errors": sum(int(n) for n in socket_errors.groups()) if socket_errors else 0,
        "p50_ms": wrk_ms(p50.group(1)) if p50 else math.nan,
        "p99_ms": wrk_ms(p99.group(1)) if p99 else math.nan,
    }


def read_ratios(
    server: Server, auth: dict[str, str], live_id: str | None, seconds: int
) -> dict[str, Any]:
    """List and get requests/s of ``server`` ÷ its ceiling's, measured in two interleaved
    rounds (ceiling, list, get, twice); each figure is the median of its rounds. Without
    ``live_id``, the list only."""
    found: dict[str, list[dict[str, float]]] = {"ceiling": [], "list": []}
    urls = {
        "ceiling": (f"{server.base}/bench/ceiling", None),
        "list": (f"{server.base}/api/v1/integrations", auth),
    }
    if live_id:
        found["get"] = []
        urls["get"] = (f"{server.base}/api/v1/integrations/{live_id}", auth)
    for _ in range(2):
        for name, (url, headers) in urls.items():
            found[name].append(wrk(url, seconds=seconds, headers=headers))
    ceiling = statistics.median(run["rps"] for run in found["ceiling"])
    out: dict[str, Any] = {"ceiling_rps": round(ceiling, 1)}
    for name in [name for name in found if name != "ceiling"]:
        rps = statistics.median(run["rps"] for run in found[name])
        out[name] = {
            "rps": rps,
            "ratio": round(rps / ceiling, 3),
            "non_2xx": sum(run["non_2xx"] for run in found[name]),
        }
    return out


def list_under_writes(
    server: Server, auth: dict[str, str], tokens_file: Path, seconds: int
) -> dict[str, Any]:
    """The list's requests/s ÷ the ceiling's (interleaved, as :func:`read_ratios`) while
    bench/write_load.py, a process of its own, sends ``LOAD_RATE`` distinct creates a second
    on a fixed schedule, during both; with the creates/s it achieved in that window."""
    load = subprocess.Popen(
        [sys.executable, str(WRITE_LOAD), server.base, str(tokens_file), f"--rate={LOAD_RATE}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first = load.stdout.readline().strip()  # type: ignore[union-attr]
        if first != "ready":
            raise RuntimeError(f"the write load did not start: {first}")
        time.sleep(1)  # let the schedule settle
        started = time.time()
        reads = read_ratios(server, auth, None, seconds)
        ended = time.time()
        summary, _ = load.communicate(f"{started} {ended}\n", timeout=60)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    return {
        "ceiling_rps": reads["ceiling_rps"],
        "list": reads["list"],
        "ratio": reads["list"]["ratio"],
        "load": json.loads(summary.strip().splitlines()[-1]),
    }


def many_connections(server: Server, auth: dict[str, str], seconds: int) -> dict[str, Any]:
    """The list at ``MANY_CONNECTIONS`` keep-alive connections (wrk -t1): p50, p99, requests/s
    and errors (socket errors and non-2xx); the ceiling's alongside, measured just before it
    at the same concurrency. A short run first warms every process up (not counted)."""
    list_url = f"{server.base}/api/v1/integrations"
    wrk(list_url, seconds=1, headers=auth, connections=MANY_CONNECTIONS)
    ceiling = wrk(f"{server.base}/bench/ceiling", seconds=seconds, connections=MANY_CONNECTIONS)
    listed = wrk(list_url, seconds=seconds, headers=auth, connections=MANY_CONNECTIONS)
    return {
        "list_p50_ms": listed["p50_ms"],
        "list_p99_ms": listed["p99_ms"],
        "list_rps": listed["rps"],
        "errors": listed["socket_errors"] + listed["non_2xx"],
        "socket_errors": listed["socket_errors"],
        "non_2xx": listed["non_2xx"],
        "ceiling_p99_ms": ceiling["p99_ms"],
        "ceiling_rps": ceiling["rps"],
        "ceiling_errors": ceiling["socket_errors"] + ceiling["non_2xx"],
    }


def postgres_ratios(root: Path, seconds: int) -> dict[str, Any]:
    """List ÷ ceiling and create ÷ ceiling of a bench server on a throwaway PostgreSQL,
    started with scripts/postgres as the tests start theirs (fsync and synchronous_commit
    off). ``{"skipped": why}`` when the machine has no PostgreSQL server binaries."""
    # scripts/postgres runs the cluster as the 'postgres' user under root: its folder must
    # not sit in this run's private (0700) temporary folder.
    try:
        import greenlet  # noqa: F401
        import psycopg  # noqa: F401
    except ImportError:
        return {"skipped": "no PostgreSQL driver: pip install -r requirements/bench.txt"}
    folder = Path(tempfile.mkdtemp(prefix="relaykit-bench-pg-"))
    try:
        started = subprocess.run(
            [str(POSTGRES_SCRIPT), "start", str(folder)], capture_output=True, text=True
        )
        if started.returncode == 3:  # the script's "no initdb"
            return {"skipped": started.stderr.strip() or "no PostgreSQL server binaries"}
        if started.returncode != 0:
            raise RuntimeError(f"scripts/postgres start failed: {started.stderr.strip()}")
        admin_url = started.stdout.strip().rpartition("=")[2]
        url = create_database(admin_url, "relaykit_bench")
        home = root / "postgres"
        seeded = seed(home, create_tenants=2000, database_url=url)
        (home / "tokens.txt").write_text("\n".join(seeded["tokens"]))
        server = Server(home, {"RELAYKIT_DATABASE_URL": url})
        auth = {"Authorization": f"Bearer {seeded['token']}"}
        try:
            listed = httpx.get(f"{server.base}/api/v1/integrations", headers=auth)
            assert len(listed.json()["data"]) == PROVIDERS, listed.text
            (home / "ceiling.json").write_bytes(listed.content)
            reads = read_ratios(server, auth, None, seconds)
            create = wrk(
                f"{server.base}/api/v1/integrations",
                seconds=seconds,
                script=CREATE_LUA,
                env={"BENCH_TOKENS": str(home / "tokens.txt")},
            )
        finally:
            server.stop()
        ceiling = reads["ceiling_rps"]
        return {
            "ceiling_rps": ceiling,
            "list": reads["list"],
            "create": {
                "rps": create["rps"],
                "ratio": round(create["rps"] / ceiling, 3),
                "non_2xx": create["non_2xx"],
            },
        }
    finally:
        subprocess.run([str(POSTGRES_SCRIPT), "stop", str(folder)], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def latencies(call: Any, count: int) -> list[float]:
    found = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        found.append((time.perf_counter() - started) * 1000)
    return sorted(found)


def paired_latencies(first: Any, second: Any, count: int) -> tuple[list[float], list[float]]:
    """Latencies (ms) of ``first`` and ``second`` called in turn ``count`` times, sorted."""
    one, two = [], []
    for _ in range(count):
        started = time.perf_counter()
        first()
        one.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        second()
        two.append((time.perf_counter() - started) * 1000)
    return sorted(one), sorted(two)


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))]


def commit() -> str:
    """The commit measured (``+ changes`` when the work tree differs from it), or
    ``unknown`` outside a git checkout."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(HERE), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        head = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} + changes" if dirty else head


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--output", default=str(HERE / "results.json"))
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--scale", type=int, default=100_000)
    args = parser.parse_args()
    ensure_wrk()
    results: dict[str, Any] = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        ),
        "commit": commit(),
    }
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)

        # throughput: list, get, create, each divided by the ceiling ---------------------------
        home = root / "main"
        # the write load's distinct creates: 25 per tenant, enough for its whole run
        load_tenants = math.ceil(LOAD_RATE * (4 * args.seconds + 30) / PROVIDERS)
        seeded = seed(home, create_tenants=3000, load_tenants=load_tenants)
        (home / "tokens.txt").write_text("\n".join(seeded["tokens"]))
        (home / "load-tokens.txt").write_text("\n".join(seeded["load_tokens"]))
        webhooks_file = seed_webhooks(home, seeded["tenant_id"], seeded["live"][0], WEBHOOKS)
        stand_in = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys, time\nfrom relaykit.testing.standin import StandIn\n"
                "s = StandIn(lambda r: (201, {'id': 'm1'})).start()\n"
                "print(s.base_url, flush=True)\ntime.sleep(86400)",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        stand_in_url = stand_in.stdout.readline().strip()  # type: ignore[union-attr]
        server = Server(
            home, {f"RELAYKIT_BENCH{n:02d}_API_BASE": stand_in_url for n in range(1, 26)}
        )
        auth = {"Authorization": f"Bearer {seeded['token']}"}
        try:
            listed = httpx.get(f"{server.base}/api/v1/integrations", headers=auth)
            assert len(listed.json()["data"]) == 25
            (home / "ceiling.json").write_bytes(listed.content)
            reads = read_ratios(server, auth, seeded["live"][0], args.seconds)
            create = wrk(
                f"{server.base}/api/v1/integrations",
                seconds=args.seconds,
                script=CREATE_LUA,
                env={"BENCH_TOKENS": str(home / "tokens.txt")},
            )
            ceiling = reads["ceiling_rps"]
            results["ceiling_rps"] = ceiling
            results["list"] = reads["list"]
            results["get"] = reads["get"]
            results["create"] = {
                "rps": create["rps"],
                "ratio": round(create["rps"] / ceiling, 3),
                "non_2xx": create["non_2xx"],
            }

            # dispatch overhead: send_sms through routing minus the stand-in called directly --
            with httpx.Client(base_url=server.base, headers=auth, timeout=10) as client:
                rule = client.post(
                    "/api/v1/routing-rules",
                    json={
                        "capability": "send_sms",
                        "integration_id": seeded["live"][0],
                        "is_default": True,
                    },
                )
                assert rule.status_code == 201, rule.text
                body = {"to": "+15550100001", "body": "bench"}
                for _ in range(50):  # warm up both paths
                    client.post("/api/v1/operations/send_sms", json=body)
                with httpx.Client(base_url=stand_in_url, timeout=10) as direct:
                    for _ in range(50):
                        direct.post("/v1/messages", json=body)
                    # Interleaved, one of each in turn, so both see the same machine.
                    plain, routed = paired_latencies(
                        lambda: direct.post("/v1/messages", json=body),
                        lambda: client.post("/api/v1/operations/send_sms", json=body),
                        1000,
                    )
            # signed webhooks received and applied ÷ ceiling: each a distinct event that
            # moves an attempt of its own (a repeat, should the run outlast the file, is
            # stored once and not counted as applied).
            received = wrk(
                f"{server.base}/",
                seconds=args.seconds,
                script=WEBHOOK_LUA,
                env={"BENCH_WEBHOOKS": str(webhooks_file)},
            )
            applied = applied_webhooks(home)
            applied_rps = received["rps"] * min(1.0, applied / max(1, received["requests"]))
            results["webhooks"] = {
                "rps": received["rps"],
                "requests": received["requests"],
                "applied": applied,
                "applied_rps": round(applied_rps, 1),
                "ratio": round(applied_rps / ceiling, 3),
                "non_2xx": received["non_2xx"],
            }
            results["dispatch"] = {
                "direct_p50_ms": round(pct(plain, 0.5), 3),
                "direct_p99_ms": round(pct(plain, 0.99), 3),
                "routed_p50_ms": round(pct(routed, 0.5), 3),
                "routed_p99_ms": round(pct(routed, 0.99), 3),
                "overhead_p50_ms": round(pct(routed, 0.5) - pct(plain, 0.5), 3),
                "overhead_p99_ms": round(pct(routed, 0.99) - pct(plain, 0.99), 3),
            }

            # the list ÷ the ceiling while LOAD_RATE distinct creates a second arrive -------
            results["list_under_writes"] = list_under_writes(
                server, auth, home / "load-tokens.txt", args.seconds
            )
        finally:
            server.stop()
            stand_in.terminate()

        # many keep-alive connections: the list's p99 on a fresh server of the same data as
        # one process, then as one process per core (`relaykit serve`'s default) -------------
        workers = len(os.sched_getaffinity(0))
        results["connections"] = {"connections": MANY_CONNECTIONS, "wrk_threads": 1}
        for label, count in (("one_process", 1), ("processes", workers)):
            server = Server(home, {}, workers=count)
            try:
                results["connections"][label] = {
                    "workers": count,
                    **many_connections(server, auth, args.seconds),
                }
            finally:
                server.stop()

        # the same reads with the read cache off: every request runs its queries ----------
        server = Server(home, {"RELAYKIT_READ_CACHE": "0"})
        try:
            cold = read_ratios(server, auth, seeded["live"][0], args.seconds)
            results["uncached"] = {"list": cold["list"], "get": cold["get"]}
        finally:
            server.stop()

        # verification throughput ÷ (concurrency ÷ latency) -----------------------------------
        out = subprocess.run(
            [sys.executable, str(HERE / "verification.py")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        results["verification"] = json.loads(out.strip().splitlines()[-1])

        # list latency with a large tenant ÷ with a small one; memory ---------------------------
        scale: dict[str, Any] = {}
        for label, history in (("small", 100 - PROVIDERS), ("large", args.scale - PROVIDERS)):
            home = root / label
            seeded = seed(home, deleted=history)
            # The read cache off: the figure is about the list's queries, not the cache.
            server = Server(home, {"RELAYKIT_READ_CACHE": "0"})
            try:
                with httpx.Client(
                    base_url=server.base,
                    timeout=10,
                    headers={"Authorization": f"Bearer {seeded['token']}"},
                ) as client:
                    for _ in range(50):
                        client.get("/api/v1/integrations")
                    timings = latencies(lambda: client.get("/api/v1/integrations"), 500)
                scale[label] = {
                    "integrations_in_tenant": history + PROVIDERS,
                    "list_p50_ms": round(statistics.median(timings), 3),
                    "rss_mb": round(server.rss_mb(), 1),
                }
            finally:
                server.stop()
        scale["ratio"] = round(scale["large"]["list_p50_ms"] / scale["small"]["list_p50_ms"], 3)
        results["scale"] = scale

        # PostgreSQL: list and create ÷ the ceiling of a server on a throwaway cluster -------
        results["postgres"] = postgres_ratios(root, args.seconds)

    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    writes = results["list_under_writes"]
    one, many = results["connections"]["one_process"], results["connections"]["processes"]
    n = many["workers"]
    table: list[tuple[str, Any, str]] = [
        ("list (25 rows, auth) ÷ ceiling", results["list"]["ratio"], "≥ 0.50"),
        ("get one ÷ ceiling", results["get"]["ratio"], "≥ 0.50"),
        ("list, read cache off ÷ ceiling", results["uncached"]["list"]["ratio"], "≥ 0.35"),
        ("get, read cache off ÷ ceiling", results["uncached"]["get"]["ratio"], ""),
        ("create ÷ ceiling", results["create"]["ratio"], "≥ 0.25"),
        (f"list ÷ ceiling, {LOAD_RATE} creates/s running", writes["ratio"], "≥ 0.35"),
        (
            "  creates/s achieved (non-2xx)",
            f"{writes['load']['achieved_per_s']} ({writes['load']['non_2xx']})",
            f"{LOAD_RATE}",
        ),
    ]
    pg = results["postgres"]
    if "skipped" in pg:
        table.append(("PostgreSQL list, create ÷ ceiling", "skipped", pg["skipped"]))
    else:
        table += [
            ("PostgreSQL: list ÷ ceiling", pg["list"]["ratio"], "≥ 0.25"),
            ("PostgreSQL: create ÷ ceiling", pg["create"]["ratio"], "≥ 0.15"),
        ]
    table += [
        ("signed webhooks applied ÷ ceiling", results["webhooks"]["ratio"], "≥ 0.30"),
        ("send_sms overhead p50 (ms)", results["dispatch"]["overhead_p50_ms"], "≤ 1.5"),
        ("send_sms overhead p99 (ms)", results["dispatch"]["overhead_p99_ms"], ""),
        ("verified/s ÷ bound", results["verification"]["ratio"], "≥ 0.90"),
        (
            f"list p99 at {MANY_CONNECTIONS} conns, {n} procs (ms)",
            f"{many['list_p99_ms']:.1f}",
            "≤ 500",
        ),
        ("  errors (socket + non-2xx)", many["errors"], "0"),
        (
            f"list p99 at {MANY_CONNECTIONS} conns, 1 proc (ms)",
            f"{one['list_p99_ms']:.1f}",
            "",
        ),
        ("  errors (socket + non-2xx)", one["errors"], ""),
        (f"list p50 at {args.scale:,} ÷ at 100", results["scale"]["ratio"], "≤ 1.5"),
        (f"server RSS at {args.scale:,} (MB)", results["scale"]["large"]["rss_mb"], ""),
    ]
    print(f"commit {results['commit']}; {results['machine']}")
    print(
        f"ceiling: {results['ceiling_rps']} requests/s; with the write load "
        f"{writes['ceiling_rps']}; at {MANY_CONNECTIONS} connections "
        f"{one['ceiling_rps']:.0f} (1 process, p99 {one['ceiling_p99_ms']:.1f} ms), "
        f"{many['ceiling_rps']:.0f} ({n} processes, p99 {many['ceiling_p99_ms']:.1f} ms)"
        + ("" if "skipped" in pg else f"; PostgreSQL server {pg['ceiling_rps']}")
    )
    for name, value, target in table:
        print(f"{name:<44} {value!s:>12}   {target}")
    load = writes["load"]
    if abs(load["achieved_per_s"] - LOAD_RATE) > 0.1 * LOAD_RATE or load["non_2xx"]:
        print(
            f"WARNING: the write load was not {LOAD_RATE} good creates/s: {load['achieved_per_s']}"
            f"/s, non-2xx {load['non_2xx_by_status']}, errors {load['errors']}"
        )
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
