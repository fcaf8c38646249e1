"""`prekeys`: bundle fetches per second (GET /v2/keys/{aci}/1 with device credentials)."""

from __future__ import annotations

import asyncio
import time

import httpx

from bench.client import register_many, upload_prekeys
from bench.stats import ProcessMeter, percentile

TARGETS = 8
KEYS_PER_TARGET = 100


async def run(args) -> dict:
    accounts = await register_many(args.url, TARGETS + 1, args.code, first_number=args.first_number)
    fetcher, targets = accounts[0], accounts[1:]
    async with httpx.AsyncClient(base_url=args.url, timeout=30, limits=httpx.Limits(max_connections=args.concurrency)) as http:
        await asyncio.gather(*(upload_prekeys(http, target, KEYS_PER_TARGET) for target in targets))
        latencies: list[float] = []
        errors = 0
        deadline = time.monotonic() + args.seconds
        headers = {"Authorization": fetcher.authorization}

        async def worker(index: int) -> None:
            nonlocal errors
            n = index
            while time.monotonic() < deadline:
                target = targets[n % len(targets)]
                n += 1
                started = time.perf_counter()
                response = await http.get(f"/v2/keys/{target.aci}/1", headers=headers)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    errors += 1

        meter = ProcessMeter(args.server_pid)
        started = time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(args.concurrency)))
        elapsed = time.monotonic() - started
    return {
        "fetches": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 2),
        "fetches_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "one_time_keys_left": "last-resort keys served after the pools ran out",
        **meter.report(elapsed),
    }
