"""GET /metrics: the Prometheus text format, route templates (not paths) as labels, the
verification queue read from the database at scrape time, the read cache counted, and no
tenant id, integration id or token in any label.

The app's metrics live in the process's registry, shared by every test in it: each test
compares two scrapes, never absolute values."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from relaykit.storage.models import integrations

from .conftest import Api
from .test_routing_api import messaging

pytestmark = pytest.mark.anyio

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
REQUESTS = "relaykit_http_requests_total"
LATENCY_COUNT = "relaykit_http_request_duration_seconds_count"
ITEM = "/api/v1/integrations/{integration_id}"


async def scrape(api: Api) -> Samples:
    response = await api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def moved(before: Samples, after: Samples) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """relaykit's counters (``_total``) that changed between two scrapes, by how much."""
    return {
        key: after[key] - before.get(key, 0.0)
        for key in after
        if key[0].startswith("relaykit_")
        and key[0].endswith("_total")
        and after[key] != before.get(key, 0.0)
    }


def label_values(samples: Mapping[Any, float]) -> set[str]:
    return {v for (_, labels) in samples for _, v in labels}


async def test_requests_are_counted_by_route_template(api: Api) -> None:
    tenant_id, headers = api.tenant_token("acme")
    first = await messaging(api, headers, "textly", "tok-ok-1")
    second = await messaging(api, headers, "chatter", "tok-ok-2")
    before = await scrape(api)
    for integration_id in (first, second, first):
        response = await api.client.get(f"/api/v1/integrations/{integration_id}", headers=headers)
        assert response.status_code == 200
    assert (await api.client.get(f"/api/v1/integrations/{first}")).status_code == 401
    assert (await api.client.get("/no/such/path")).status_code == 404
    assert (await api.client.get(f"/no/{first}")).status_code == 404
    assert (await api.client.delete("/health")).status_code == 405
    for name in ("FOO", "BAR-1"):  # any client may invent methods: none adds a series
        assert (await api.client.request(name, "/no/such/path")).status_code == 404
    after = await scrape(api)
    assert moved(before, after) == {
        (REQUESTS, (("method", "GET"), ("route", ITEM), ("status", "200"))): 3,
        (REQUESTS, (("method", "GET"), ("route", ITEM), ("status", "401"))): 1,
        (REQUESTS, (("method", "GET"), ("route", "unmatched"), ("status", "404"))): 2,
        (REQUESTS, (("method", "DELETE"), ("route", "unmatched"), ("status", "405"))): 1,
        (REQUESTS, (("method", "OTHER"), ("route", "unmatched"), ("status", "404"))): 2,
        # the first scrape itself, seen by the second
        (REQUESTS, (("method", "GET"), ("route", "/metrics"), ("status", "200"))): 1,
    } | {
        key: delta
        for key, delta in moved(before, after).items()
        if key[0] == "relaykit_read_cache_total"  # counted on SQLite only (its own test)
    }
    latency = value(after, LATENCY_COUNT, route=ITEM, method="GET") - value(
        before, LATENCY_COUNT, route=ITEM, method="GET"
    )
    assert latency == 4
    token = headers["Authorization"].removeprefix("Bearer ")
    for label in label_values(after):
        assert tenant_id not in label and first not in label and second not in label
        assert token not in label


async def test_the_verification_queue_is_read_at_scrape_time(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    before = await scrape(api)
    assert value(before, "relaykit_verification_queue_due") == 0  # the worker is off here
    assert value(before, "relaykit_verification_queue_oldest_seconds") == 0
    # two new integrations are pending_verify, due now (the worker is off in these tests)
    first = await messaging(api, headers, "textly", "tok-ok-1", status="pending_verify")
    await messaging(api, headers, "chatter", "tok-ok-2", status="pending_verify")
    # ... another tenant's third is not due yet, and an active one is not in the queue
    _, other = api.tenant_token("other")
    later = await messaging(api, other, "textly", "tok-ok-3", status="pending_verify")
    await messaging(api, other, "chatter", "tok-ok-4", status="active")
    now = dt.datetime.now(dt.UTC)

    def due_at(conn: sa.Connection, integration_id: str, when: dt.datetime) -> None:
        conn.execute(
            integrations.update()
            .where(integrations.c.id == integration_id)
            .values(next_verify_at=when)
        )

    api.database.transaction_blocking(due_at, first, now - dt.timedelta(seconds=600))
    api.database.transaction_blocking(due_at, later, now + dt.timedelta(hours=1))
    after = await scrape(api)
    assert value(after, "relaykit_verification_queue_due") == 2
    assert 600 <= value(after, "relaykit_verification_queue_oldest_seconds") < 900


async def test_the_read_cache_counts_hits_and_misses(api: Api) -> None:
    _, headers = api.tenant_token("acme")
    await messaging(api, headers, "textly", "tok-ok-1")
    before = await scrape(api)
    for _ in range(3):
        assert (await api.client.get("/api/v1/integrations", headers=headers)).status_code == 200
    after = await scrape(api)
    hits = value(after, "relaykit_read_cache_total", result="hit") - value(
        before, "relaykit_read_cache_total", result="hit"
    )
    misses = value(after, "relaykit_read_cache_total", result="miss") - value(
        before, "relaykit_read_cache_total", result="miss"
    )
    if api.services.read_cache:
        # each request: the token's verdict and the list; the first computes both
        assert (misses, hits) == (2, 4)
    else:  # PostgreSQL: the cache is off and counts nothing
        assert (misses, hits) == (0, 0)


async def test_metrics_need_no_token_and_are_not_in_the_api_document(api: Api) -> None:
    response = await api.client.get("/metrics", headers={"Authorization": "Bearer nonsense"})
    assert response.status_code == 200
    assert "# TYPE relaykit_http_requests_total counter" in response.text
    document = (await api.client.get("/schema/openapi.json")).json()
    assert "/metrics" not in document["paths"]
