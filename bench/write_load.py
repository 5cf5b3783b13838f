"""A steady write load for bench/run.py: distinct valid creates at a fixed rate, open loop.

    python bench/write_load.py BASE_URL TOKENS_FILE [--rate 50]

Create number k is sent at ``start + k / rate`` whatever the answers before it are doing (each
in a task of its own), so a slow answer does not lower the rate; every create is distinct
(tenant k mod n, provider ``bench{k div n mod 25 + 1}``: one live integration per tenant and
provider, as the contract allows), rotating through the tenants' tokens in TOKENS_FILE (one a
line) as bench/create.lua does.

Prints ``ready`` once the first create has been answered 2xx (or, when none is within 30 s,
the JSON line at once). Then reads one line from stdin,
``T0 T1`` (``time.time()`` values: the window the runner measured in), stops sending, waits
for the creates in flight and prints one JSON line: the creates answered 2xx in the window per
second, non-2xx answers (by status) and transport errors over the whole run, and how late the
sends were against their schedule. Runs in a process of its own so it does not share the
runner's interpreter.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

PROVIDERS = 25


async def run(args: argparse.Namespace, tokens: list[str]) -> dict[str, object]:
    capacity = len(tokens) * PROVIDERS
    answered: list[float] = []  # time.time() of each 2xx answer
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    lateness: list[float] = []  # seconds each send started after its scheduled time
    ready = asyncio.Event()
    in_flight: set[asyncio.Task[None]] = set()

    async def create(client: httpx.AsyncClient, number: int) -> None:
        token = tokens[number % len(tokens)]
        provider = number // len(tokens) % PROVIDERS + 1
        body = {
            "provider": f"bench{provider:02d}",
            "credentials": {"api_key": f"load_{number}_secret", "sender": "+15550100000"},
            "enabled_capabilities": ["send_sms"],
            "metadata": {"load": number},
        }
        try:
            response = await client.post(
                "/api/v1/integrations", json=body, headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.HTTPError as exc:
            errors[type(exc).__name__] += 1
            return
        if 200 <= response.status_code < 300:
            answered.append(time.time())
            ready.set()
        else:
            statuses[response.status_code] += 1

    async def schedule(client: httpx.AsyncClient, stop: asyncio.Event) -> int:
        loop = asyncio.get_running_loop()
        start = loop.time()
        number = 0
        while not stop.is_set() and number < capacity:
            due = start + number / args.rate
            delay = due - loop.time()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    break
                except TimeoutError:
                    pass
            lateness.append(max(0.0, loop.time() - due))
            task = asyncio.create_task(create(client, number))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            number += 1
        return number

    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=args.base_url, timeout=30, limits=limits) as client:
        stop = asyncio.Event()
        sending = asyncio.create_task(schedule(client, stop))
        try:
            await asyncio.wait_for(ready.wait(), 30)
        except TimeoutError:  # no create got through: report what came back instead
            stop.set()
            line = f"{time.time()} {time.time()}"
        else:
            print("ready", flush=True)
            line = await asyncio.to_thread(sys.stdin.readline)
            stop.set()
        sent = await sending
        if in_flight:
            await asyncio.wait(set(in_flight))
    first, last = (float(word) for word in line.split())
    in_window = sum(1 for when in answered if first <= when <= last)
    lateness.sort()
    return {
        "rate_target": args.rate,
        "window_s": round(last - first, 3),
        "created_in_window": in_window,
        "achieved_per_s": round(in_window / max(1e-9, last - first), 2),
        "sent": sent,
        "created": len(answered),
        "non_2xx": sum(statuses.values()),
        "non_2xx_by_status": {str(k): v for k, v in sorted(statuses.items())},
        "errors": dict(errors),
        "ran_out_of_distinct_creates": sent >= capacity,
        "late_p99_ms": round(lateness[int(len(lateness) * 0.99)] * 1000, 2) if lateness else 0,
        "late_max_ms": round(lateness[-1] * 1000, 2) if lateness else 0,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("base_url")
    parser.add_argument("tokens")
    parser.add_argument("--rate", type=float, default=50)
    args = parser.parse_args()
    tokens = [line for line in Path(args.tokens).read_text().splitlines() if line]
    print(json.dumps(asyncio.run(run(args, tokens))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
