"""`profiles`: versioned profile reads per second over unauthenticated sockets with access keys
(tunnelled `GET /v1/profile/{aci}/{version}` with `Unidentified-Access-Key`), as a client reads
its contacts' profiles at start-up. `--concurrency` sockets, `--window` reads in flight each."""

from __future__ import annotations

import asyncio
import os
import time

import httpx
import websockets

from bench.client import b64, parse_frame, register_many, request_frame, ws_url
from bench.stats import ProcessMeter, percentile

TARGETS = 8


def profile_body(version: str) -> dict:
    """A profile as Signal clients write one: ciphertexts of the padded lengths."""
    return {
        "version": version,
        "commitment": b64(os.urandom(97)),
        "name": b64(os.urandom(81)),
        "about": b64(os.urandom(156)),
        "aboutEmoji": b64(os.urandom(60)),
        "paymentAddress": None,
        "phoneNumberSharing": b64(os.urandom(29)),
        "avatar": False,
        "sameAvatar": False,
    }


async def run(args) -> dict:
    targets = await register_many(args.url, TARGETS, args.code, first_number=args.first_number, concurrency=args.register_concurrency)
    versions = {}
    async with httpx.AsyncClient(base_url=args.url, timeout=30) as http:
        for target in targets:
            versions[target.aci] = os.urandom(32).hex()
            response = await http.put("/v1/profile", json=profile_body(versions[target.aci]), headers={"Authorization": target.authorization})
            response.raise_for_status()
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + args.seconds

    async def reader(index: int) -> None:
        nonlocal errors
        sent: dict[int, float] = {}
        window = asyncio.Semaphore(args.window)
        async with websockets.connect(ws_url(args.url), max_size=2**22) as ws:

            async def receive() -> None:
                nonlocal errors
                async for data in ws:
                    frame = parse_frame(data)
                    if frame.type != frame.RESPONSE:
                        continue
                    latencies.append(time.perf_counter() - sent.pop(frame.response.id))
                    errors += frame.response.status != 200
                    window.release()

            receiving = asyncio.ensure_future(receive())
            request_id = 0
            while time.monotonic() < deadline:
                await window.acquire()
                target = targets[(index + request_id) % len(targets)]
                request_id += 1
                headers = [f"Unidentified-Access-Key:{b64(target.access_key)}"]
                sent[request_id] = time.perf_counter()
                await ws.send(request_frame(request_id, "GET", f"/v1/profile/{target.aci}/{versions[target.aci]}", headers=headers))
            for _ in range(args.window):  # the last answers
                await asyncio.wait_for(window.acquire(), 30)
            receiving.cancel()

    meter = ProcessMeter(args.server_pid)
    started = time.monotonic()
    await asyncio.gather(*(reader(i) for i in range(args.concurrency)))
    elapsed = time.monotonic() - started
    return {
        "sockets": args.concurrency,
        "window": args.window,
        "reads": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 2),
        "reads_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        **meter.report(elapsed),
    }
