"""`prekeys`: prekey bundle fetches per second (`GET /v2/keys/{aci}/1`), p50/p99.

Over sockets (the default), as Signal clients fetch: `--concurrency` sockets, each with `--window`
fetches in flight (tunnelled requests). With credentials each socket is a fetcher account of its
own; with `--access-key` the sockets are unauthenticated and every fetch carries the target's
`Unidentified-Access-Key`, as a sealed-sender client fetches. `--http`: plain HTTP requests with
the first fetcher's credentials instead, `--concurrency` at a time.

Each of the TARGETS accounts starts with KEYS_PER_TARGET one-time EC and Kyber keys; once those
are handed out, bundles carry the last-resort key and no EC one-time key (the claim still runs).
"""

from __future__ import annotations

import asyncio
import time

import httpx
import websockets

from bench.client import ack_frame, b64, parse_frame, register_many, request_frame, upload_prekeys, ws_url
from bench.stats import ProcessMeter, percentile

TARGETS = 8
KEYS_PER_TARGET = 100


async def run(args) -> dict:
    fetchers = 1 if args.http or args.access_key else args.concurrency
    accounts = await register_many(
        args.url, TARGETS + fetchers, args.code, first_number=args.first_number, concurrency=args.register_concurrency
    )
    fetchers, targets = accounts[:fetchers], accounts[fetchers:]
    async with httpx.AsyncClient(base_url=args.url, timeout=30) as http:
        for target in targets:  # one at a time: each checks 100 signatures, and the pool is small
            await upload_prekeys(http, target, KEYS_PER_TARGET)
    latencies: list[float] = []
    errors: dict[int, int] = {}
    deadline = time.monotonic() + args.seconds
    meter = ProcessMeter(args.server_pid)
    started = time.monotonic()
    if args.http:
        await _over_http(args, fetchers[0], targets, deadline, latencies, errors)
    else:
        sockets = [None if args.access_key else fetchers[i] for i in range(args.concurrency)]
        await asyncio.gather(*(_over_socket(args, i, fetcher, targets, deadline, latencies, errors) for i, fetcher in enumerate(sockets)))
    elapsed = time.monotonic() - started
    return {
        "transport": "http" if args.http else "socket",
        "authorization": "access key" if args.access_key else "credentials",
        "clients": args.concurrency,
        "in_flight_per_client": 1 if args.http else args.window,
        "fetches": len(latencies),
        "errors": sum(errors.values()),
        "error_statuses": errors,
        "seconds": round(elapsed, 2),
        "fetches_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        **meter.report(elapsed),
    }


def _count(errors: dict[int, int], status: int) -> None:
    if status != 200:
        errors[status] = errors.get(status, 0) + 1


async def _over_http(args, fetcher, targets, deadline, latencies, errors) -> None:
    limits = httpx.Limits(max_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=args.url, timeout=30, limits=limits) as http:
        headers = {"Authorization": fetcher.authorization}

        async def worker(index: int) -> None:
            n = index
            while time.monotonic() < deadline:
                target = targets[n % len(targets)]
                n += 1
                sent = time.perf_counter()
                response = await http.get(f"/v2/keys/{target.aci}/1", headers=headers)
                latencies.append(time.perf_counter() - sent)
                _count(errors, response.status_code)

        await asyncio.gather(*(worker(i) for i in range(args.concurrency)))


async def _over_socket(args, index, fetcher, targets, deadline, latencies, errors) -> None:
    """One socket (authenticated as `fetcher`, or anonymous with access keys) keeping `--window`
    fetches in flight until the deadline, then waiting for the last answers."""
    sent: dict[int, float] = {}
    window = asyncio.Semaphore(args.window)
    headers = {"Authorization": fetcher.authorization} if fetcher is not None else {}
    async with websockets.connect(ws_url(args.url), additional_headers=headers, max_size=2**22, open_timeout=30) as ws:

        async def receive() -> None:
            async for data in ws:
                frame = parse_frame(data)
                if frame.type == frame.REQUEST:  # the server's queue/empty: acknowledged as clients do
                    await ws.send(ack_frame(frame.request.id))
                elif frame.type == frame.RESPONSE and frame.response.id in sent:
                    latencies.append(time.perf_counter() - sent.pop(frame.response.id))
                    _count(errors, frame.response.status)
                    window.release()

        receiving = asyncio.ensure_future(receive())
        request_id = 0
        try:
            while time.monotonic() < deadline:
                await window.acquire()
                target = targets[(index + request_id) % len(targets)]
                request_id += 1
                frame_headers = [] if fetcher is not None else [f"Unidentified-Access-Key:{b64(target.access_key)}"]
                sent[request_id] = time.perf_counter()
                await ws.send(request_frame(request_id, "GET", f"/v2/keys/{target.aci}/1", headers=frame_headers))
            for _ in range(args.window):  # the last answers
                await asyncio.wait_for(window.acquire(), 30)
        finally:
            receiving.cancel()
