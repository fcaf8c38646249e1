"""`fanout`: one sealed-sender multi-recipient send (`PUT /v1/messages/multi_recipient`) to
`--recipients` accounts whose sockets are open; the time until the last one has it. Repeated
`--rounds` times."""

from __future__ import annotations

import asyncio
import os
import struct
import time
import uuid

import httpx

from bench.client import b64, open_socket, raise_open_file_limit, register_many
from bench.stats import ProcessMeter, percentile

MAX_RECIPIENTS = 5000
WAIT_SECONDS = 30


def multi_recipient_payload(accounts, ciphertext: bytes) -> bytes:
    """Sealed Sender v2 (version 0x22): each recipient's device 1 with its registration id and 48
    bytes of (random) key material, then the ephemeral key and the shared ciphertext."""
    count, out = len(accounts), bytearray([0x22])
    while True:  # varint
        byte = count & 0x7F
        count >>= 7
        out.append(byte | (0x80 if count else 0))
        if not count:
            break
    for account in accounts:
        out += uuid.UUID(account.aci).bytes + bytes([1]) + struct.pack(">H", account.registration_id & 0x3FFF)
        out += os.urandom(48)
    return bytes(out) + os.urandom(32) + ciphertext


def combined_access_key(accounts) -> bytes:
    key = bytes(16)
    for account in accounts:
        key = bytes(a ^ b for a, b in zip(key, account.access_key))
    return key


async def run(args) -> dict:
    count = min(args.recipients, MAX_RECIPIENTS)
    raise_open_file_limit()
    accounts = await register_many(
        args.url, count, args.code, first_number=args.first_number, concurrency=args.register_concurrency
    )
    arrivals: dict[int, list[float]] = {}

    def receiver(index: int):
        def received(body: bytes, arrived: float) -> None:
            arrivals.setdefault(index, []).append(arrived)

        return received

    sockets = [await open_socket(args.url, account, receiver(i)) for i, account in enumerate(accounts)]
    await asyncio.sleep(1.0)
    arrivals.clear()  # nothing should have been queued, but start clean
    headers = {
        "Unidentified-Access-Key": b64(combined_access_key(accounts)),
        "Content-Type": "application/vnd.signal-messenger.mrm",
    }
    rounds, meter = [], ProcessMeter(args.server_pid)
    measured_from = time.monotonic()
    async with httpx.AsyncClient(base_url=args.url, timeout=60) as http:
        for round_number in range(args.rounds):
            payload = multi_recipient_payload(accounts, os.urandom(1000))
            started = time.monotonic()
            response = await http.put(
                f"/v1/messages/multi_recipient?ts={int(time.time() * 1000)}", content=payload, headers=headers
            )
            answered = time.monotonic()
            response.raise_for_status()
            deadline = started + WAIT_SECONDS
            while sum(len(a) > round_number for a in arrivals.values()) < count and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            got = [a[round_number] for a in arrivals.values() if len(a) > round_number]
            latencies = [(t - started) * 1000 for t in got]
            rounds.append(
                {
                    "received": len(got),
                    "response_ms": round((answered - started) * 1000, 1),
                    "p50_ms": round(percentile(latencies, 50), 1),
                    "last_ms": round(max(latencies, default=float("nan")), 1),
                }
            )
    report = meter.report(time.monotonic() - measured_from)
    for ws, reader in sockets:
        reader.cancel()
    await asyncio.gather(*(ws.close() for ws, _ in sockets), return_exceptions=True)
    best = min(rounds, key=lambda r: r["last_ms"])
    return {
        "recipients": count,
        "rounds": rounds,
        "best_last_ms": best["last_ms"],
        "all_received": all(r["received"] == count for r in rounds),
        **report,
    }
