"""relaykit's Prometheus metrics: every one is declared here, with its labels.

No label carries a tenant id, an integration id or a secret: labels are providers,
capabilities, outcomes, route templates, methods and statuses, each from a small fixed set.

Several API processes (``relaykit serve --workers N``) share their counts through
prometheus-client's multiprocess mode: set ``PROMETHEUS_MULTIPROC_DIR`` to an empty
folder before the processes start (``serve --workers`` does it for you); ``/metrics``
then sums every process's files (:func:`render`). The verification queue is read from the
database at scrape time (:class:`QueueCollector`), so it is the same whichever process
answers.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import anyio
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from relaykit.storage.database import Database

logger = logging.getLogger("relaykit.metrics")

#: The environment variable prometheus-client reads (at import) for multiprocess mode.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: The media type of :func:`render`'s output: the text exposition format 0.0.4, which every
#: Prometheus reads (relaykit's names need nothing newer); the server adds the charset.
CONTENT_TYPE = "text/plain; version=0.0.4"

#: Seconds: the HTTP latency buckets (a cached read takes ~0.1 ms, a send a few ms, a slow
#: provider seconds).
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

HTTP_REQUESTS = Counter(
    "relaykit_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "relaykit_http_request_duration_seconds",
    "Time from a request's start to its response's end, by route template and method.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
VERIFICATIONS = Counter(
    "relaykit_verifications",
    "Credential checks finished, by provider and outcome (accepted, rejected, transient, "
    "gave_up, stale: the row changed during the check).",
    ["provider", "outcome"],
)
LEASE_RECLAIMS = Counter(
    "relaykit_verification_lease_reclaims",
    "Claims that took a check from a worker whose lease had expired.",
)
WORKER_LOOP_ERRORS = Counter(
    "relaykit_worker_loop_errors",
    "Failures of the verification worker's claim loop (it backs off and goes on).",
    ["error"],
)
DISPATCH_ATTEMPTS = Counter(
    "relaykit_dispatch_attempts",
    "Provider calls made for operations, by provider, capability and outcome.",
    ["provider", "capability", "outcome"],
)
FALLBACKS = Counter(
    "relaykit_fallbacks",
    "Operations that moved on to their rule's fallback integration, by capability.",
    ["capability"],
)
WEBHOOK_EVENTS = Counter(
    "relaykit_webhook_events",
    "Webhook events received, by provider and result: per event applied (moved an "
    "attempt), stored (kept, moved nothing) or duplicate; per delivery rejected (400) or "
    'unavailable (503). A rejection whose integration is unknown has provider "unknown".',
    ["provider", "result"],
)
KEY_PROVIDER_ERRORS = Counter(
    "relaykit_key_provider_errors",
    "Errors of a key provider wrapping or unwrapping a data key, by key provider and operation.",
    ["key_provider", "operation"],
)
READ_CACHE = Counter(
    "relaykit_read_cache",
    "Lookups in the read cache, by result (hit, miss).",
    ["result"],
)
READ_CACHE_HIT = READ_CACHE.labels("hit")
READ_CACHE_MISS = READ_CACHE.labels("miss")


#: The queue gauges' names (computed at scrape time, see :class:`QueueCollector`).
QUEUE_DUE = "relaykit_verification_queue_due"
QUEUE_OLDEST = "relaykit_verification_queue_oldest_seconds"


class QueueCollector(Collector):
    """The verification queue as one scrape read it from the database: how many
    ``pending_verify`` rows are due (waiting or being checked) and how long the oldest has
    been due, in seconds (0 when none is). ``None`` (the read failed or took too long): the
    gauges are left out of that scrape rather than reported as an empty queue."""

    def __init__(self, due: int | None, oldest_seconds: float | None) -> None:
        self.due = due
        self.oldest_seconds = oldest_seconds

    def collect(self) -> Iterator[Metric]:
        if self.due is None:
            return
        yield GaugeMetricFamily(
            QUEUE_DUE, "Due pending_verify integrations (waiting or being checked).", self.due
        )
        yield GaugeMetricFamily(
            QUEUE_OLDEST,
            "Seconds since the longest-due pending_verify integration became due (0: none).",
            self.oldest_seconds or 0.0,
        )


def multiprocess_dir() -> str | None:
    """The folder several processes share their counts through, if this one is set up so."""
    return os.environ.get(MULTIPROC_ENV) or None


def render(extra: Iterable[Collector] = ()) -> bytes:
    """Every metric in the Prometheus text format: this process's (or, in multiprocess mode,
    every process's summed from their files), then the ``extra`` collectors' (read per
    scrape, e.g. :class:`QueueCollector`)."""
    if multiprocess_dir() is not None:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        output = generate_latest(registry)
    else:
        output = generate_latest(REGISTRY)
    for collector in extra:
        own = CollectorRegistry(auto_describe=False)
        own.register(collector)
        output += generate_latest(own)
    return output


#: Seconds a scrape waits for the queue's read before leaving the gauges out.
QUEUE_READ_TIMEOUT = 2.0


async def read_queue(database: Database) -> QueueCollector:
    """The verification queue now, read with one statement (bounded in time: a read that
    fails or passes :data:`QUEUE_READ_TIMEOUT` leaves the gauges out of this scrape)."""
    from relaykit.ids import utcnow
    from relaykit.storage.verification_queue import due

    now = utcnow()
    result: tuple[int, dt.datetime | None] | None = None
    try:
        with anyio.move_on_after(QUEUE_READ_TIMEOUT):
            result = await database.read(due, now)
    except Exception as exc:  # the database is down: /metrics still answers the rest
        logger.warning("reading the verification queue for /metrics failed: %s", type(exc).__name__)
    if result is None:
        return QueueCollector(None, None)
    count, oldest = result
    age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
    return QueueCollector(count, age)
