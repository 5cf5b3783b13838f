"""A local stand-in for Stripe's ``GET /v1/balance``, driven by the secret key it is sent.

Bodies are Stripe's own: the balance fixture (shared/provider-specs/stripe_fixtures3.json,
``resources.balance``) and Stripe's error object. The key's prefix picks the behaviour:

* ``sk_test_good_…``: 200 with the balance;
* ``sk_test_bad_…``: 401 "Invalid API Key provided: sk_test_****";
* ``sk_test_flaky_…``: 503 for the first two requests with that key, then 200;
* ``sk_test_hang_…``: never answers;
* ``sk_test_stall_once_…``: never answers the first request with that key, then 200.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from relaykit.testing.standin import Answer, StandInRequest

BALANCE = {
    "available": [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}],
    "connect_reserved": [{"amount": 0, "currency": "usd"}],
    "livemode": False,
    "object": "balance",
    "pending": [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}],
}


def stripe_error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind}}


class StripeBehaviour:
    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self._lock = threading.Lock()

    def key_of(self, request: StandInRequest) -> str:
        return request.headers.get("authorization", "").removeprefix("Bearer ")

    def __call__(self, request: StandInRequest) -> Answer:
        if request.path != "/v1/balance":
            return 404, stripe_error("Unrecognized request URL", "invalid_request_error")
        key = self.key_of(request)
        with self._lock:
            self.seen[key] += 1
            count = self.seen[key]
        if key.startswith("sk_test_good_"):
            return 200, BALANCE
        if key.startswith("sk_test_bad_"):
            return 401, stripe_error(
                f"Invalid API Key provided: sk_test_****{key[-4:]}", "invalid_request_error"
            )
        if key.startswith("sk_test_flaky_"):
            if count <= 2:
                return 503, stripe_error("Stripe is temporarily unavailable", "api_error")
            return 200, BALANCE
        if key.startswith("sk_test_hang_"):
            return None
        if key.startswith("sk_test_stall_once_"):
            return None if count == 1 else (200, BALANCE)
        return 401, stripe_error("Invalid API Key provided", "invalid_request_error")
