"""`latency`: a fixed offered rate (`--rate` messages per second in total) from `--pairs` senders
over WebSockets to their receivers' sockets; the time from handing a message to the sender's socket
until the receiver's socket has it, as p50/p95/p99. Each message carries its send time."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import time

from bench.client import open_socket, register_many, request_frame
from bench.stats import ProcessMeter, percentile
from signalserver.proto.envelope_pb2 import Envelope

CONTENT_BYTES = 200
MAX_OUTSTANDING = 1024  # per sender: unanswered sends beyond this count as the server falling behind
DRAIN_SECONDS = 3


async def run(args) -> dict:
    accounts = await register_many(args.url, 2 * args.pairs, args.code, first_number=args.first_number)
    pairs = [(accounts[2 * i], accounts[2 * i + 1]) for i in range(args.pairs)]
    window: dict[str, float] = {}
    latencies: list[float] = []
    counters = {"sent": 0, "errors": 0, "behind": 0}

    def received(body: bytes, arrived: float) -> None:
        envelope = Envelope()
        envelope.ParseFromString(body)
        (sent,) = struct.unpack(">d", envelope.content[:8])
        if window["start"] <= sent < window.get("end", float("inf")):
            latencies.append((arrived - sent) * 1000)

    receivers = [await open_socket(args.url, receiver, received) for _, receiver in pairs]
    interval = args.pairs / args.rate  # seconds between two sends of one sender
    stop = asyncio.Event()

    async def sender(account, recipient, offset: float) -> None:
        path = f"/v1/messages/{recipient.aci}"
        padding = base64.b64encode(os.urandom(CONTENT_BYTES - 8))
        outstanding = [0]

        def answered(response) -> None:
            outstanding[0] -= 1
            if response.status != 200:
                counters["errors"] += 1

        ws, reader = await open_socket(args.url, account, on_response=answered)
        request_id, next_send = 0, time.monotonic() + offset
        while not stop.is_set():
            delay = next_send - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            next_send += interval
            if outstanding[0] >= MAX_OUTSTANDING:
                counters["behind"] += 1
                continue
            outstanding[0] += 1
            request_id += 1
            sent = time.monotonic()
            content = base64.b64encode(struct.pack(">d", sent) + base64.b64decode(padding)).decode()
            body = json.dumps(
                {
                    "messages": [
                        {
                            "type": 1,
                            "destinationDeviceId": 1,
                            "destinationRegistrationId": recipient.registration_id,
                            "content": content,
                        }
                    ]
                }
            ).encode()
            await ws.send(request_frame(request_id, "PUT", path, body, ["Content-Type:application/json"]))
            if window["start"] <= sent < window.get("end", float("inf")):
                counters["sent"] += 1
        reader.cancel()
        await ws.close()

    window["start"] = time.monotonic() + 1.0  # after a second of warm-up
    senders = [
        asyncio.ensure_future(sender(a, b, i * interval / args.pairs)) for i, (a, b) in enumerate(pairs)
    ]
    await asyncio.sleep(1.0)
    meter = ProcessMeter(args.server_pid)
    await asyncio.sleep(args.seconds)
    window["end"] = time.monotonic()
    report = meter.report(args.seconds)
    stop.set()
    await asyncio.gather(*senders, return_exceptions=True)
    await asyncio.sleep(DRAIN_SECONDS)  # messages sent in the window may still be on their way
    for ws, reader in receivers:
        reader.cancel()
        await ws.close()
    return {
        "pairs": args.pairs,
        "offered_per_second": args.rate,
        "sent": counters["sent"],
        "delivered": len(latencies),
        "delivered_per_second": round(len(latencies) / args.seconds, 1),
        "send_errors": counters["errors"],
        "not_sent_server_behind": counters["behind"],
        "p50_ms": round(percentile(latencies, 50), 2),
        "p95_ms": round(percentile(latencies, 95), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(max(latencies, default=0), 2),
        **report,
    }
