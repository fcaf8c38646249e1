"""Clients of a live server (tests/servers.py) over real sockets: accounts registered the way a
Signal client registers them (verification session, the development code, real signed keys), and
a `/v1/websocket/` client that reads every frame as it arrives.

Every wait is bounded (a `timeout` in seconds); only the server's own loopback address is used.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import secrets
import time
from dataclasses import dataclass, field

import httpx
import websockets

from signalserver.proto.websocket_pb2 import WebSocketMessage
from tests.crypto import IdentityKeyPair, signed_ec_prekey, signed_kem_prekey
from tests.factories import basic_auth
from tests.servers import DEV_CODE

MESSAGE_PATH = "/api/v1/message"
QUEUE_EMPTY_PATH = "/api/v1/queue/empty"


@dataclass(frozen=True)
class LiveAccount:
    """A primary device registered over HTTP: what a client keeps after registering."""

    aci: str
    pni: str
    number: str
    password: str
    registration_id: int
    device_id: int = 1
    # The private halves stay with the client: they sign the prekeys of devices it links.
    aci_identity: IdentityKeyPair | None = field(default=None, repr=False, compare=False)
    pni_identity: IdentityKeyPair | None = field(default=None, repr=False, compare=False)

    @property
    def authorization(self) -> str:
        return basic_auth(f"{self.aci}.{self.device_id}", self.password)


async def register_account(url: str, *, number: str | None = None, code: str = DEV_CODE) -> LiveAccount:
    """Verify a number with the server's development code and register it with real keys."""
    number = number or f"+1201555{secrets.randbelow(10_000):04d}"
    aci_identity, pni_identity = IdentityKeyPair(), IdentityKeyPair()
    password = secrets.token_urlsafe(24)
    registration_id = secrets.randbelow(16_000) + 1
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        session = await http.post("/v1/verification/session", json={"number": number})
        assert session.status_code == 200, session.text
        code_path = f"/v1/verification/session/{session.json()['id']}/code"
        requested = await http.post(code_path, json={"transport": "sms", "client": "tests"})
        assert requested.status_code == 200, requested.text
        verified = await http.put(code_path, json={"code": code})
        assert verified.status_code == 200 and verified.json()["verified"], verified.text
        body = {
            "sessionId": session.json()["id"],
            "accountAttributes": {
                "fetchesMessages": True,  # a client that holds a socket: no push token
                "registrationId": registration_id,
                "pniRegistrationId": secrets.randbelow(16_000) + 1,
                "capabilities": {"spqr": True},
                "unidentifiedAccessKey": base64.b64encode(os.urandom(16)).decode(),
            },
            "aciIdentityKey": base64.b64encode(aci_identity.public_key).decode(),
            "pniIdentityKey": base64.b64encode(pni_identity.public_key).decode(),
            "aciSignedPreKey": signed_ec_prekey(aci_identity, key_id=1),
            "pniSignedPreKey": signed_ec_prekey(pni_identity, key_id=2),
            "aciPqLastResortPreKey": signed_kem_prekey(aci_identity, key_id=3),
            "pniPqLastResortPreKey": signed_kem_prekey(pni_identity, key_id=4),
        }
        registered = await http.post(
            "/v1/registration", json=body, headers={"Authorization": basic_auth(number, password)}
        )
        assert registered.status_code == 200, registered.text
    answer = registered.json()
    return LiveAccount(
        answer["uuid"], answer["pni"], number, password, registration_id,
        aci_identity=aci_identity, pni_identity=pni_identity,
    )


async def link_device(url: str, primary: LiveAccount) -> LiveAccount:
    """Link a new device to `primary`'s account, as a client scanning the primary's code does."""
    password = secrets.token_urlsafe(24)
    registration_id = secrets.randbelow(16_000) + 1
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        issued = await http.get("/v1/devices/provisioning/code", headers={"Authorization": primary.authorization})
        assert issued.status_code == 200, issued.text
        body = {
            "verificationCode": issued.json()["verificationCode"],
            "accountAttributes": {
                "fetchesMessages": True,
                "registrationId": registration_id,
                "pniRegistrationId": secrets.randbelow(16_000) + 1,
                "capabilities": {"spqr": True},
            },
            "aciSignedPreKey": signed_ec_prekey(primary.aci_identity, key_id=11),
            "pniSignedPreKey": signed_ec_prekey(primary.pni_identity, key_id=12),
            "aciPqLastResortPreKey": signed_kem_prekey(primary.aci_identity, key_id=13),
            "pniPqLastResortPreKey": signed_kem_prekey(primary.pni_identity, key_id=14),
        }
        linked = await http.put("/v1/devices/link", json=body, headers={"Authorization": basic_auth("linked", password)})
        assert linked.status_code == 200, linked.text
    return LiveAccount(
        primary.aci, primary.pni, primary.number, password, registration_id, linked.json()["deviceId"],
        aci_identity=primary.aci_identity, pni_identity=primary.pni_identity,
    )


class SocketClosed(AssertionError):
    """The socket closed while the test was waiting for a frame on it."""


class ChatSocket:
    """A `/v1/websocket/` client on a real socket. A reader task takes every frame as it arrives:
    server requests queue up in order (with their arrival time, for latency measurements) and
    responses are matched to our requests by id. Use `async with await ChatSocket.connect(...)`."""

    def __init__(self, ws: websockets.asyncio.client.ClientConnection):
        self.ws = ws
        self.requests: asyncio.Queue = asyncio.Queue()
        self.arrived_at: dict[int, float] = {}  # server request id → time.monotonic() on arrival
        self._responses: dict[int, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(cls, ws_url: str, authorization: str | None = None, *, query="", headers=None, timeout=5.0):
        """Open `/v1/websocket/` on a server (`server.ws_url`); raises websockets.InvalidStatus if
        the upgrade is refused."""
        extra = dict(headers or {})
        if authorization is not None:
            extra["Authorization"] = authorization
        ws = await websockets.connect(
            f"{ws_url}/v1/websocket/{query}", additional_headers=extra, open_timeout=timeout, close_timeout=2
        )
        return cls(ws)

    async def __aenter__(self) -> ChatSocket:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _read(self) -> None:
        try:
            async for data in self.ws:
                if isinstance(data, str):
                    continue
                frame = WebSocketMessage()
                frame.ParseFromString(data)
                if frame.type == WebSocketMessage.REQUEST:
                    self.arrived_at[frame.request.id] = time.monotonic()
                    self.requests.put_nowait(frame.request)
                elif frame.type == WebSocketMessage.RESPONSE:
                    waiter = self._responses.pop(frame.response.id, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(frame.response)
        except websockets.ConnectionClosed:
            pass
        finally:
            for waiter in self._responses.values():
                if not waiter.done():
                    waiter.set_exception(SocketClosed(f"closed with {self.close_code} before the response"))

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    async def next_request(self, timeout: float = 3.0):
        """The next server-initiated request (WebSocketRequestMessage), in arrival order."""
        if self.requests.empty() and self._reader.done():
            raise SocketClosed(f"socket closed with {self.close_code}")
        getter = asyncio.ensure_future(self.requests.get())
        done, _ = await asyncio.wait({getter, self._reader}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            return getter.result()
        getter.cancel()
        if not self.requests.empty():
            return self.requests.get_nowait()
        if self._reader.done():
            raise SocketClosed(f"socket closed with {self.close_code}")
        raise TimeoutError(f"no server request within {timeout} s")

    async def next_message(self, timeout: float = 3.0):
        """The next `PUT /api/v1/message` request, answering any `queue/empty` on the way."""
        while True:
            request = await self.next_request(timeout)
            if request.path == MESSAGE_PATH:
                return request
            assert request.path == QUEUE_EMPTY_PATH, request
            await self.ack(request)

    async def backlog(self, timeout: float = 3.0) -> list:
        """Every message the server sends before `PUT /api/v1/queue/empty` (unacknowledged);
        answers the queue/empty request with 200 as clients do."""
        delivered = []
        while True:
            request = await self.next_request(timeout)
            assert request.verb == "PUT", request
            if request.path == QUEUE_EMPTY_PATH:
                await self.ack(request)
                return delivered
            assert request.path == MESSAGE_PATH, request
            delivered.append(request)

    async def expect_no_request(self, seconds: float) -> None:
        """Nothing server-initiated arrives within `seconds`."""
        try:
            request = await self.next_request(seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected server request {request.verb} {request.path}")

    async def ack(self, request, status: int = 200) -> None:
        """Answer a server request (a 2xx acknowledges a delivered message)."""
        frame = WebSocketMessage(type=WebSocketMessage.RESPONSE)
        frame.response.id = request.id
        frame.response.status = status
        frame.response.message = "OK" if 200 <= status < 300 else "Error"
        await self.ws.send(frame.SerializeToString())

    async def request(self, verb: str, path: str, body: bytes = b"", headers=(), timeout: float = 5.0):
        """Tunnel a REST request over the socket; returns the WebSocketResponseMessage."""
        request_id = next(self._ids)
        frame = WebSocketMessage(type=WebSocketMessage.REQUEST)
        frame.request.verb, frame.request.path, frame.request.id = verb, path, request_id
        frame.request.headers.extend(headers)
        if body:
            frame.request.body = body
        waiter = self._responses[request_id] = asyncio.get_running_loop().create_future()
        await self.ws.send(frame.SerializeToString())
        return await asyncio.wait_for(waiter, timeout)

    async def wait_closed(self, timeout: float = 5.0) -> int | None:
        """Wait until the server closes the socket (or the connection drops); its close code."""
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.close_code

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.wait_for(asyncio.shield(self._reader), 5)
