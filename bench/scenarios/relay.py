"""`relay`: K sender/receiver pairs over authenticated WebSockets, sending as fast as the window
allows (tunnelled PUT /v1/messages); counts messages delivered to and acknowledged by receivers.

The window is end to end: a pair has at most `--window` messages sent and not yet delivered, so
the figure is the rate the server sustains, not how fast it can pile rows into the queue.

Identified sends (the default) also cost a delivery receipt back to the sender and its ack; with
`--sealed` the senders send sealed-sender messages over unauthenticated sockets with the
recipient's access key, as Signal clients send most messages: no receipts.

`--cross --url2 URL`: the senders' sockets go to `--url` and the receivers' to `--url2`, a second
server process on the same database and Redis, so every message crosses processes: the sending
process finds the receiver's socket elsewhere (presence) and hands the envelope over through the
channel layer, sealed (docs/architecture.md §4.3). The receivers connect before anything is
sent and never reconnect, so every message they count came that way."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time

import websockets

from bench.client import ack_frame, b64, parse_frame, register_many, request_frame
from bench.stats import ProcessMeter

CONTENT_BYTES = 200
UNIDENTIFIED_SENDER = 6  # envelope type of a sealed-sender message


def _ws_url(url: str) -> str:
    return url.replace("http://", "ws://", 1).rstrip("/") + "/v1/websocket/"


def receivers_url(args) -> str:
    """Where the receivers' sockets go: `--url2` with `--cross` (another process), else `--url`."""
    if not args.cross:
        return args.url
    if not args.url2:
        raise SystemExit("relay --cross needs --url2, the second server process")
    if args.url2.rstrip("/") == args.url.rstrip("/"):
        raise SystemExit("relay --cross needs --url2 to be another server process than --url")
    return args.url2


async def run(args) -> dict:
    receiving_url = _ws_url(receivers_url(args))
    accounts = await register_many(args.url, 2 * args.pairs, args.code, first_number=args.first_number)
    pairs = [(accounts[2 * i], accounts[2 * i + 1]) for i in range(args.pairs)]
    url = _ws_url(args.url)
    stop = asyncio.Event()
    counters = {"delivered": 0, "sent": 0, "errors": 0}
    measuring = asyncio.Event()

    windows = {b.aci: asyncio.Semaphore(args.window) for _, b in pairs}

    async def receiver(account) -> None:
        window = windows[account.aci]
        async with websockets.connect(receiving_url, additional_headers={"Authorization": account.authorization}, max_size=2**22) as ws:
            while not stop.is_set():
                try:
                    data = await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    continue
                frame = parse_frame(data)
                if frame.type == frame.REQUEST:
                    await ws.send(ack_frame(frame.request.id))
                    if frame.request.path == "/api/v1/message":
                        window.release()
                        if measuring.is_set():
                            counters["delivered"] += 1

    async def sender(account, recipient) -> None:
        body = json.dumps(
            {
                "messages": [
                    {
                        "type": UNIDENTIFIED_SENDER if args.sealed else 1,
                        "destinationDeviceId": 1,
                        "destinationRegistrationId": recipient.registration_id,
                        "content": base64.b64encode(os.urandom(CONTENT_BYTES)).decode(),
                    }
                ]
            }
        ).encode()
        path = f"/v1/messages/{recipient.aci}"
        window = windows[recipient.aci]
        if args.sealed:  # an unauthenticated socket; the access key goes with every request
            socket_headers, frame_headers = {}, ["Content-Type:application/json", f"Unidentified-Access-Key:{b64(recipient.access_key)}"]
        else:
            socket_headers, frame_headers = {"Authorization": account.authorization}, ["Content-Type:application/json"]
        async with websockets.connect(url, additional_headers=socket_headers, max_size=2**22) as ws:

            async def read() -> None:
                async for data in ws:
                    frame = parse_frame(data)
                    if frame.type == frame.RESPONSE:
                        if frame.response.status != 200:
                            counters["errors"] += 1
                            window.release()  # never delivered
                    elif frame.type == frame.REQUEST:  # delivery receipts and queue/empty
                        await ws.send(ack_frame(frame.request.id))

            reader = asyncio.ensure_future(read())
            request_id = 0
            while not stop.is_set():
                if window.locked():  # bounded: a message that never arrives must not hold the sender past the end
                    try:
                        async with asyncio.timeout(0.5):
                            await window.acquire()
                    except TimeoutError:
                        continue
                else:
                    await window.acquire()
                request_id += 1
                await ws.send(request_frame(request_id, "PUT", path, body, frame_headers))
                counters["sent"] += 1
            reader.cancel()

    receivers = [asyncio.ensure_future(receiver(b)) for _, b in pairs]
    await asyncio.sleep(1.0)
    senders = [asyncio.ensure_future(sender(a, b)) for a, b in pairs]
    await asyncio.sleep(1.0)  # warm up
    measuring.set()
    meter = ProcessMeter(args.server_pid)
    started = time.monotonic()
    await asyncio.sleep(args.seconds)
    elapsed = time.monotonic() - started
    delivered = counters["delivered"]
    report = meter.report(elapsed)
    stop.set()
    await asyncio.gather(*senders, *receivers, return_exceptions=True)
    return {
        "pairs": args.pairs,
        "window": args.window,
        "sealed": args.sealed,
        "cross": args.cross,
        "delivered": delivered,
        "seconds": round(elapsed, 2),
        "delivered_per_second": round(delivered / elapsed, 1),
        "send_errors": counters["errors"],
        **report,
    }
