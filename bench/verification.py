"""Verification throughput against a stand-in of Stripe with a fixed latency.

    python bench/verification.py [--count 1600] [--latency 0.05] [--concurrency 16]

Seeds COUNT pending Stripe integrations (one tenant each) on a fresh SQLite database, runs
one VerificationWorker in this process against a local stand-in that answers
``GET /v1/balance`` after LATENCY seconds, and reports verified per second against the
bound concurrency / latency (the rate a worker that spent no time of its own would reach).
The figure that matters is the ratio, measured in one run.

COUNT is 1,600 so that the run (about five seconds) measures the worker's steady rate: at 400
(about 1.3 s) the start (the first claim, sixteen new connections) and the last wave's tail
weigh about 7 % of the figure.

The stand-in runs in a process of its own, as the provider's API would: in this process its
threads would take the GIL from the worker being measured.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

import anyio
import msgspec

from relaykit import tenants as tenant_store
from relaykit.cli import event_loop_options
from relaykit.integrations import IntegrationService
from relaykit.keys import local_key_set
from relaykit.plugins import make_plugin_manager
from relaykit.settings import Settings
from relaykit.storage.database import open_database
from relaykit.worker import VerificationWorker

BALANCE = {"object": "balance", "available": [], "pending": [], "livemode": False}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1600)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=None)
    args = parser.parse_args()

    stripe = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom relaykit.testing.standin import StandIn\n"
            f"s = StandIn(lambda r: (200, {BALANCE!r}), latency={args.latency!r}).start()\n"
            "print(s.base_url, flush=True)\ntime.sleep(86400)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    stripe_url = stripe.stdout.readline().strip()  # type: ignore[union-attr]
    try:
        return measure(args, stripe_url)
    finally:
        stripe.terminate()


def measure(args: argparse.Namespace, stripe_url: str) -> int:
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings.from_env(
            {"RELAYKIT_HOME": folder, "RELAYKIT_STRIPE_API_BASE": stripe_url}
        )
        if args.concurrency:
            settings = msgspec.structs.replace(settings, worker_concurrency=args.concurrency)
        database = open_database(settings)
        catalog = make_plugin_manager(environ={}).catalog()
        keyring = local_key_set(settings, database)
        service = IntegrationService(database, catalog, keyring)
        for number in range(args.count):
            tenant_id = database.transaction_blocking(tenant_store.create_tenant, f"t{number}").id
            anyio.run(
                service.create,
                tenant_id,
                {
                    "provider": "stripe",
                    "credentials": {
                        "publishable_key": "pk_test_1",
                        "secret_key": f"sk_test_{number}",
                    },
                    "enabled_capabilities": ["initiate_payment"],
                },
            )
        worker = VerificationWorker(settings, database, catalog, keyring)

        async def run() -> float:
            started = time.perf_counter()
            async with anyio.create_task_group() as group:
                group.start_soon(worker.run)
                while worker.stats["active"] < args.count:
                    await anyio.sleep(0.01)
                elapsed = time.perf_counter() - started
                worker.stop()
            return elapsed

        elapsed = anyio.run(run, backend_options=event_loop_options())  # as `relaykit worker`
        rate = args.count / elapsed
        bound = settings.worker_concurrency / args.latency
        report = {
            "count": args.count,
            "latency_s": args.latency,
            "concurrency": settings.worker_concurrency,
            "elapsed_s": round(elapsed, 3),
            "verified_per_s": round(rate, 1),
            "bound_per_s": round(bound, 1),
            "ratio": round(rate / bound, 3),
        }
        print(json.dumps(report))
        database.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
