"""Time from ``POST /api/v1/integrations`` to ``status: active`` against an instant provider.

    python bench/create_to_active.py [--count 30]

Starts ``relaykit serve`` on a fresh home (embedded worker, SQLite) and a local stand-in of
Stripe that answers at once, creates COUNT Stripe integrations one after another (one
tenant each) and polls each every 2 ms until it is active. Prints p50 and p90 in ms.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

from relaykit import tenants as tenant_store
from relaykit.settings import Settings
from relaykit.storage.database import open_database
from relaykit.testing.standin import stand_in

BALANCE = {"object": "balance", "available": [], "pending": [], "livemode": False}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home, stand_in(lambda r: (200, BALANCE)) as stripe:
        env = {
            **os.environ,
            "RELAYKIT_HOME": home,
            "RELAYKIT_STRIPE_API_BASE": stripe.base_url,
            "RELAYKIT_LOG_LEVEL": "WARNING",
        }
        env.pop("RELAYKIT_DATABASE_URL", None)
        database = open_database(Settings.from_env(env))
        tokens = []
        for number in range(args.count):
            database.transaction_blocking(tenant_store.create_tenant, f"t{number}")
            tokens.append(database.transaction_blocking(tenant_store.create_token, f"t{number}")[1])
        database.dispose()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = subprocess.Popen(
            [sys.executable, "-m", "relaykit", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    httpx.get(f"{base}/health", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            timings = []
            with httpx.Client(base_url=base, timeout=10) as client:
                for token in tokens:
                    headers = {"Authorization": f"Bearer {token}"}
                    started = time.perf_counter()
                    created = client.post(
                        "/api/v1/integrations",
                        headers=headers,
                        json={
                            "provider": "stripe",
                            "credentials": {
                                "publishable_key": "pk_test_1",
                                "secret_key": "sk_test_1",
                            },
                            "enabled_capabilities": ["initiate_payment"],
                        },
                    ).json()["data"]
                    while (
                        client.get(f"/api/v1/integrations/{created['id']}", headers=headers).json()[
                            "data"
                        ]["status"]
                        != "active"
                    ):
                        time.sleep(0.002)
                    timings.append((time.perf_counter() - started) * 1000)
        finally:
            server.terminate()
            server.wait(timeout=15)
    timings.sort()
    print(
        json.dumps(
            {
                "count": len(timings),
                "p50_ms": round(statistics.median(timings), 1),
                "p90_ms": round(timings[int(len(timings) * 0.9) - 1], 1),
                "max_ms": round(timings[-1], 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
