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

from prometheus_client import Counter, Histogram

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
    "Webhook deliveries received, by provider and result (applied, stored, duplicate, "
    "rejected, unavailable).",
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
