"""A client that floods its chat socket with keepalive frames, in a process of its own so its
busy loop does not slow the test that measures the server (tests/test_flood.py):

    python -m tests.flooder WS_URL AUTHORIZATION SECONDS

Sends as fast as the socket takes frames, reads and drops the answers, and opens a new socket
whenever the server closes one (again and again while it refuses), until SECONDS have passed;
prints {"frames": n, "closes": [close codes], "refused": {status: count}}.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import websockets

from signalserver.proto.websocket_pb2 import WebSocketMessage


def keepalive_frame() -> bytes:
    frame = WebSocketMessage(type=WebSocketMessage.REQUEST)
    frame.request.verb, frame.request.path, frame.request.id = "GET", "/v1/keepalive", 1
    return frame.SerializeToString()


async def flood(ws_url: str, authorization: str, seconds: float) -> dict:
    frame, outcome = keepalive_frame(), {"frames": 0, "closes": [], "refused": {}}
    headers = {"Authorization": authorization, "X-Signal-Disable-Messages": "true"}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            ws = await websockets.connect(f"{ws_url}/v1/websocket/", additional_headers=headers, open_timeout=10)
        except websockets.InvalidStatus as refused:  # again and again: a hundred upgrades a second
            status = str(refused.response.status_code)
            outcome["refused"][status] = outcome["refused"].get(status, 0) + 1
            await asyncio.sleep(0.01)
            continue
        async with ws:
            drain = asyncio.ensure_future(_drain(ws))
            try:
                while time.monotonic() < deadline:
                    await ws.send(frame)
                    outcome["frames"] += 1
                    if outcome["frames"] % 64 == 0:
                        await asyncio.sleep(0)  # let the reader drop answers
            except websockets.ConnectionClosed as closed:
                outcome["closes"].append(closed.rcvd.code if closed.rcvd else None)
            finally:
                drain.cancel()
    return outcome


async def _drain(ws) -> None:
    async for _ in ws:
        pass


if __name__ == "__main__":
    print(json.dumps(asyncio.run(flood(sys.argv[1], sys.argv[2], float(sys.argv[3])))))
