"""`discovery`: numbers looked up per second (`POST /v1/directory/lookup`), each request asking about
`--batch` numbers never asked before, a quarter of them registered and discoverable, from
`--concurrency` clients. The server under test needs the quota raised first:
`manage.py ratelimit set directoryLookup 1000000000 0.000001` and `directoryLookupPerIp` likewise."""

from __future__ import annotations

import asyncio
import time

import httpx

from bench.client import register_many
from bench.stats import ProcessMeter, percentile

REGISTERED = 16
MAX_BATCH = 5000


async def run(args) -> dict:
    accounts = await register_many(args.url, REGISTERED + 1, args.code, first_number=args.first_number, concurrency=args.register_concurrency)
    asker, registered = accounts[0], accounts[1:]
    batch = min(args.batch, MAX_BATCH)
    deadline = time.monotonic() + args.seconds
    latencies: list[float] = []
    found = errors = 0
    counter = iter(range(10**9))

    def numbers() -> list[str]:
        """`batch` numbers not asked before: a quarter of the registered ones' numbers repeat in
        every batch (the rest are new), so each request finds some."""
        start = next(counter) * batch
        unregistered = [f"+1999{(start + i) % 10**7:07d}" for i in range(batch - min(len(registered), batch // 4))]
        return unregistered + [account.number for account in registered[: batch // 4]]

    async with httpx.AsyncClient(base_url=args.url, timeout=60, limits=httpx.Limits(max_connections=args.concurrency)) as http:
        headers = {"Authorization": asker.authorization}

        async def client() -> None:
            nonlocal found, errors
            while time.monotonic() < deadline:
                started = time.perf_counter()
                response = await http.post("/v1/directory/lookup", json={"newE164s": numbers(), "prevE164s": [], "token": None}, headers=headers)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    errors += 1
                else:
                    found += len(response.json()["results"])

        meter = ProcessMeter(args.server_pid)
        started = time.monotonic()
        await asyncio.gather(*(client() for _ in range(args.concurrency)))
        elapsed = time.monotonic() - started
    return {
        "batch": batch,
        "requests": len(latencies),
        "errors": errors,
        "found": found,
        "numbers_per_second": round(len(latencies) * batch / elapsed, 1),
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
        **meter.report(elapsed),
    }
