"""Metrics, request ids and logs end to end: ``relaykit serve`` in a process of its own with
its worker, the real Twilio and Plivo plugins, the messaging stand-in (tests/), real HTTP.

* /metrics is scraped with Prometheus' own text parser before and after a create, a
  verification, a send that falls back and a webhook: each counter moved by exactly what
  those did, and nothing else of relaykit's moved.
* With ``RELAYKIT_LOG_FORMAT=json`` every line of the server's log is one JSON object, and
  every line logged while a request ran carries that request's id; in both formats the
  canary credentials appear in no line.
* ``relaykit serve --workers 2``: /metrics sums both processes, whichever answers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from relaykit.testing.standin import StandIn, stand_in

from .conftest import Server, cli_env, free_port, run_cli, start_public_server, stop_server
from .messaging_standin import Messaging
from .test_verification_e2e import wait_for

MESSAGE = {"to": "+14155552345", "body": "Your code is 123456"}
FROM = "+15550100000"
TWILIO_TOKEN = "canary-metrics-twilio-6d2e1f"
PLIVO_TOKEN = "canary-metrics-plivo-0b9a7c"
CANARIES = (TWILIO_TOKEN, PLIVO_TOKEN)
INTEGRATIONS = "/api/v1/integrations"
ITEM = "/api/v1/integrations/{integration_id}"

Key = tuple[str, tuple[tuple[str, str], ...]]


def scrape(base_url: str) -> dict[Key, float]:
    response = httpx.get(f"{base_url}/metrics", timeout=10)
    assert response.status_code == 200
    samples: dict[Key, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def counters_moved(before: dict[Key, float], after: dict[Key, float]) -> dict[Key, float]:
    """relaykit's counters that changed, by how much."""
    return {
        key: after[key] - before.get(key, 0.0)
        for key in after
        if key[0].startswith("relaykit_")
        and key[0].endswith("_total")
        and after[key] != before.get(key, 0.0)
    }


def key(name: str, **labels: str) -> Key:
    return (name, tuple(sorted(labels.items())))


class Calls:
    """A raw client that counts its own requests as the server should count them: by route
    template, method and status."""

    def __init__(self, server: Server, token: str) -> None:
        self.client = server.client(token)
        self.counted: Counter[Key] = Counter()
        self.request_ids: list[str] = []

    def call(self, method: str, path: str, route: str, **kwargs: Any) -> httpx.Response:
        response = self.client.request(method, path, **kwargs)
        self.counted[
            key(
                "relaykit_http_requests_total",
                route=route,
                method=method,
                status=str(response.status_code),
            )
        ] += 1
        self.request_ids.append(response.headers["x-request-id"])
        return response

    def create(self, provider: str, identity: str, auth_token: str) -> str:
        made = self.call(
            "POST",
            INTEGRATIONS,
            INTEGRATIONS,
            json={
                "provider": provider,
                "credentials": {
                    identity: f"{provider}-account",
                    "auth_token": auth_token,
                    "from_number": FROM,
                },
                "enabled_capabilities": ["send_sms"],
            },
        )
        assert made.status_code == 201, made.text
        integration_id = str(made.json()["data"]["id"])
        wait_for(
            lambda: (
                self.call("GET", f"{INTEGRATIONS}/{integration_id}", ITEM).json()["data"]["status"]
                == "active"
            )
        )
        return integration_id


class World:
    def __init__(self, server: Server, token: str, messaging: Messaging, providers: StandIn):
        self.server = server
        self.token = token
        self.messaging = messaging
        self.providers = providers


def start_world(tmp_path: Path, extra: dict[str, str] | None = None) -> Iterator[World]:
    messaging = Messaging()
    messaging.hold_callbacks = True  # the test posts them when it wants them
    with stand_in(messaging) as providers:
        env = cli_env(
            tmp_path / "home",
            {
                "RELAYKIT_TWILIO_API_BASE": providers.base_url,
                "RELAYKIT_PLIVO_API_BASE": providers.base_url,
                **(extra or {}),
            },
        )
        run_cli(["tenants", "create", "acme"], env)
        created = run_cli(["tokens", "create", "--tenant", "acme"], env)
        token = created.stdout.strip().splitlines()[-1]
        server = start_public_server(env, tmp_path / "server.log")
        try:
            yield World(server, token, messaging, providers)
        finally:
            stop_server(server)
            log = server.log.read_text()
            leaked = [canary for canary in CANARIES if canary in log]
            assert not leaked, f"secrets in the server's log: {leaked}"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from start_world(tmp_path)


def run_the_story(world: World) -> tuple[Calls, str, str]:
    """Create Twilio and Plivo (each verified by the worker), a rule with Plivo as the
    fallback, a send that Twilio's 503 moves to Plivo, and Plivo's one delivered callback.
    The calls made (counted), and the two integrations."""
    calls = Calls(world.server, world.token)
    twilio = calls.create("twilio", "account_sid", TWILIO_TOKEN)
    plivo = calls.create("plivo", "auth_id", PLIVO_TOKEN)
    rule = calls.call(
        "POST",
        "/api/v1/routing-rules",
        "/api/v1/routing-rules",
        json={
            "capability": "send_sms",
            "integration_id": twilio,
            "fallback_integration_id": plivo,
            "is_default": True,
            "priority": 100,
        },
    )
    assert rule.status_code == 201, rule.text
    world.messaging.mode[TWILIO_TOKEN] = "down"
    world.messaging.statuses[PLIVO_TOKEN] = ("delivered",)
    sent = calls.call(
        "POST", "/api/v1/operations/send_sms", "/api/v1/operations/{capability}", json=MESSAGE
    )
    assert sent.status_code == 201, sent.text
    assert [a["outcome"] for a in sent.json()["data"]["attempts"]] == ["transient", "succeeded"]
    (posted,) = world.messaging.flush_callbacks()
    assert posted.status_code == 200
    assert posted.answer["data"] == {"events": 1, "applied": 1, "duplicates": 0}
    calls.counted[
        key(
            "relaykit_http_requests_total",
            route="/webhooks/{integration_id}",
            method="POST",
            status="200",
        )
    ] += 1
    return calls, twilio, plivo


def test_each_counter_moves_by_exactly_what_was_done(world: World) -> None:
    before = scrape(world.server.base_url)
    calls, _, _ = run_the_story(world)
    after = scrape(world.server.base_url)
    moved = counters_moved(before, after)
    # The read cache's counts depend on the database (off on PostgreSQL) and on polling.
    moved = {k: v for k, v in moved.items() if k[0] != "relaykit_read_cache_total"}
    expected = Counter(calls.counted)
    expected[key("relaykit_http_requests_total", route="/metrics", method="GET", status="200")] += 1
    expected.update(
        {
            key("relaykit_verifications_total", provider="twilio", outcome="accepted"): 1,
            key("relaykit_verifications_total", provider="plivo", outcome="accepted"): 1,
            key(
                "relaykit_dispatch_attempts_total",
                provider="twilio",
                capability="send_sms",
                outcome="transient",
            ): 1,
            key(
                "relaykit_dispatch_attempts_total",
                provider="plivo",
                capability="send_sms",
                outcome="succeeded",
            ): 1,
            key("relaykit_fallbacks_total", capability="send_sms"): 1,
            key("relaykit_webhook_events_total", provider="plivo", result="applied"): 1,
        }
    )
    assert moved == dict(expected)
    # the latency histogram saw each request the counter saw
    for (_name, labels), count in calls.counted.items():
        shown = dict(labels)
        histogram = key(
            "relaykit_http_request_duration_seconds_count",
            route=shown["route"],
            method=shown["method"],
        )
        assert after[histogram] - before.get(histogram, 0.0) >= count
    # the queue is empty once both are verified
    assert after[key("relaykit_verification_queue_due")] == 0
    # every request had an id of its own
    assert len(set(calls.request_ids)) == len(calls.request_ids)


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_log_lines_carry_the_request_id_and_no_secret(tmp_path: Path, log_format: str) -> None:
    worlds = start_world(
        tmp_path, {"RELAYKIT_LOG_FORMAT": log_format, "RELAYKIT_LOG_LEVEL": "DEBUG"}
    )
    world = next(worlds)
    try:
        calls, twilio, plivo = run_the_story(world)
        # one request with an id of the caller's own, naming the integration in its path
        mine = "caller-chosen-id-42"
        shown = calls.client.get(f"{INTEGRATIONS}/{twilio}", headers={"X-Request-ID": mine})
        assert shown.headers["x-request-id"] == mine
        time.sleep(0.5)  # the last lines reach the file
    finally:
        next(worlds, None)  # stops the server and checks the canaries
    lines = world.server.log.read_text().splitlines()
    assert lines
    assert not [line for line in lines if any(canary in line for canary in CANARIES)]
    if log_format == "text":
        assert any(f"request_id={mine}" in line and "relaykit.access" in line for line in lines)
        return
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry)
    access = [e for e in entries if e["logger"] == "relaykit.access"]
    # one access line per request, with its id, route and status
    assert {e["request_id"] for e in access} >= set(calls.request_ids) | {mine}
    (own,) = [e for e in access if e["request_id"] == mine]
    assert own["route"] == ITEM and own["status"] == 200 and own["method"] == "GET"
    assert own["tenant_id"] and own["integration_id"] == twilio
    # every line logged while a request ran carries it: the send's try lines name the
    # request that sent, the webhook's line the webhook's request
    by_id = {e["request_id"]: e for e in access}
    tries = [e for e in entries if e["logger"] == "relaykit.dispatch" and " try " in e["message"]]
    assert len(tries) == 2
    for entry in tries:
        assert by_id[entry["request_id"]]["route"] == "/api/v1/operations/{capability}"
        assert entry["tenant_id"] == own["tenant_id"]
    (received,) = [
        e for e in entries if e["logger"] == "relaykit.webhooks" and plivo in e["message"]
    ]
    assert by_id[received["request_id"]]["route"] == "/webhooks/{integration_id}"
    assert received["integration_id"] == plivo  # known from the webhook's path
    # the worker's lines belong to no request
    assert all("request_id" not in e for e in entries if e["logger"].startswith("relaykit.worker"))


def test_serve_with_two_workers_sums_every_process(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = cli_env(home)
    run_cli(["tenants", "create", "acme"], env)
    token = run_cli(["tokens", "create", "--tenant", "acme"], env).stdout.strip().splitlines()[-1]
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "relaykit", "serve", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    base = f"http://127.0.0.1:{port}"
    server = Server(base, process, log)
    try:
        wait_for(lambda: _answers(base), timeout=60)
        folder = home / "prometheus-multiproc"
        assert folder.is_dir()
        before = scrape(base)
        requests = 40
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10
        ) as client:
            for _ in range(requests):
                # a fresh connection each time, so both processes get some
                assert client.get(INTEGRATIONS, headers={"Connection": "close"}).status_code == 200
        after = scrape(base)
        listed = key("relaykit_http_requests_total", route=INTEGRATIONS, method="GET", status="200")
        assert after[listed] - before.get(listed, 0.0) == requests
        # both processes wrote their counts
        assert len(list(folder.glob("counter_*.db"))) >= 2
    finally:
        stop_server(server)


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
