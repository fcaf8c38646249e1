"""What the fault tests do to a live server: timed requests, sends, upgrades that may be refused."""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
import websockets

from tests.live_clients import ChatSocket, LiveAccount
from tests.messaging.helpers import message_list

WAIT = 5.0  # seconds any single request, frame or close may take
DATABASE = "signalserver"  # the server's database in the suite's PostgreSQL


async def timed(http: httpx.AsyncClient, method: str, path: str, **kwargs) -> tuple[httpx.Response, float]:
    """The response and the seconds it took."""
    started = time.monotonic()
    response = await http.request(method, path, **kwargs)
    return response, time.monotonic() - started


async def send(http: httpx.AsyncClient, sender: LiveAccount, recipient: LiveAccount, content: bytes) -> httpx.Response:
    """`PUT /v1/messages/{recipient}` from `sender` to the recipient's primary device."""
    body = message_list([(1, recipient.registration_id)], content=content, timestamp=int(time.time() * 1000))
    return await http.put(f"/v1/messages/{recipient.aci}", json=body, headers={"Authorization": sender.authorization})


async def send_over_socket(ws: ChatSocket, recipient: LiveAccount, content: bytes):
    """The same send tunnelled over the sender's socket; the WebSocketResponseMessage."""
    body = message_list([(1, recipient.registration_id)], content=content, timestamp=int(time.time() * 1000))
    return await ws.request(
        "PUT", f"/v1/messages/{recipient.aci}", json.dumps(body).encode(), ["Content-Type:application/json"], timeout=WAIT
    )


async def refused_upgrade(ws_url: str, account: LiveAccount) -> tuple[int, dict, float]:
    """Open `/v1/websocket/` expecting a refusal: (status, headers, seconds it took)."""
    started = time.monotonic()
    try:
        socket = await ChatSocket.connect(ws_url, account.authorization, timeout=WAIT)
    except websockets.InvalidStatus as refused:
        return refused.response.status_code, dict(refused.response.headers), time.monotonic() - started
    await socket.close()
    raise AssertionError("the upgrade was accepted")


async def first_success(attempt, deadline_seconds: float, interval: float = 0.05) -> float:
    """Call `attempt()` (True once it succeeds) until it does; the seconds that took. Bounded."""
    started = time.monotonic()
    while time.monotonic() - started < deadline_seconds:
        if await attempt():
            return time.monotonic() - started
        await asyncio.sleep(interval)
    raise AssertionError(f"no success within {deadline_seconds} s")


def tracebacks(output: str) -> list[str]:
    """Each traceback in a server's output, plain or inside a JSON log line."""
    return re.findall(r"Traceback \(most recent call last\)", output)
