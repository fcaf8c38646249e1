"""`idle`: `--sockets` authenticated delivery sockets (one account each, up to 10,000) held open
and idle; the server's resident memory before and after, per socket. Needs `--server-pid`.
Registering the accounts is measured too: accounts a second, and server and client CPU for each."""

from __future__ import annotations

import asyncio
import resource
import time

from bench.client import open_socket, raise_open_file_limit, register_many
from bench.stats import ProcessMeter, rss_bytes

MAX_SOCKETS = 10_000
CONNECT_CONCURRENCY = 64
SETTLE_SECONDS = 3


async def run(args) -> dict:
    count = min(args.sockets, MAX_SOCKETS)
    if not args.server_pid:
        raise SystemExit("idle needs --server-pid (the server's main process) to measure its memory")
    limit = raise_open_file_limit()
    if limit < count + 100:
        raise SystemExit(f"the open-file limit ({limit}) is too low for {count} sockets: raise it (ulimit -n)")
    meter, client_before, started = ProcessMeter(args.server_pid), _client_cpu_seconds(), time.monotonic()
    accounts = await register_many(
        args.url, count, args.code, first_number=args.first_number, concurrency=args.register_concurrency
    )
    register_seconds = time.monotonic() - started
    server_cpu = meter.report(register_seconds)["server_cpu_percent"] / 100 * register_seconds
    client_cpu = _client_cpu_seconds() - client_before
    before = rss_bytes(args.server_pid)
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    failures = 0

    async def connect(account):
        nonlocal failures
        async with gate:
            try:
                return await open_socket(args.url, account)
            except Exception:
                failures += 1
                return None

    started = time.monotonic()
    sockets = [s for s in await asyncio.gather(*(connect(a) for a in accounts)) if s is not None]
    connect_seconds = time.monotonic() - started
    await asyncio.sleep(SETTLE_SECONDS)
    held = min(args.seconds, 300.0)
    await asyncio.sleep(held)
    open_now = sum(1 for ws, _ in sockets if ws.state.name == "OPEN")
    after = rss_bytes(args.server_pid)
    for ws, reader in sockets:
        reader.cancel()
    await asyncio.gather(*(ws.close() for ws, _ in sockets), return_exceptions=True)
    per_socket = (after - before) / max(1, len(sockets))
    return {
        "sockets": count,
        "register_seconds": round(register_seconds, 2),
        "registered_per_second": round(count / register_seconds, 1),
        "server_cpu_ms_per_registration": round(1000 * server_cpu / count, 2),
        "client_cpu_ms_per_registration": round(1000 * client_cpu / count, 2),
        "opened": len(sockets),
        "failed": failures,
        "still_open_after_idle": open_now,
        "connect_seconds": round(connect_seconds, 2),
        "idle_seconds": held,
        "server_rss_before_mib": round(before / 2**20, 1),
        "server_rss_after_mib": round(after / 2**20, 1),
        "rss_per_socket_kib": round(per_socket / 1024, 1),
        "projected_10k_sockets_gib": round((before + per_socket * MAX_SOCKETS) / 2**30, 2),
    }


def _client_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
