"""Accounts for benchmarks, made the way a client makes them: verification session, code from the
server's development sender, registration with real keys and XEdDSA signatures, prekey upload."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from signalserver.crypto import SigningKey
from signalserver.proto.websocket_pb2 import WebSocketMessage

KEEPALIVE_SECONDS = 30  # Signal clients send GET /v1/keepalive this often on an idle socket
KEEPALIVE_IDS = 1 << 62  # request ids of keepalives, apart from a scenario's own
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


def require_loopback(url: str) -> None:
    """Benchmarks only ever talk to a server on this machine."""
    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK_HOSTS and not host.startswith("127."):
        raise SystemExit(f"refusing to benchmark {host}: only loopback addresses are allowed")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def signed_key(identity: SigningKey, key_id: int, public_key: bytes) -> dict:
    return {"keyId": key_id, "publicKey": b64(public_key), "signature": b64(identity.sign(public_key)).rstrip("=")}


def ec_key() -> bytes:
    return SigningKey.generate().public_key  # any valid 0x05 Curve25519 public key


def kem_key() -> bytes:
    return b"\x08" + os.urandom(1568)  # the server never does Kyber arithmetic


@dataclass
class BenchAccount:
    aci: str
    number: str
    password: str
    registration_id: int
    access_key: bytes
    identity: SigningKey

    @property
    def authorization(self) -> str:
        return "Basic " + b64(f"{self.aci}.1:{self.password}".encode())


UNAVAILABLE_RETRIES = 5


class SocketCaller:
    """Requests over one unauthenticated socket, as libsignal's registration service sends them,
    each answered by its id. A 503 (a server short of database connections answers so rather than
    queue: docs/deployment.md) is retried after its Retry-After, as clients do, so that one busy
    moment does not end a run of thousands of registrations."""

    def __init__(self, ws):
        self.ws = ws
        self.waiting: dict[int, asyncio.Future] = {}
        self.next_id = 1
        self.reader = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(cls, url: str) -> SocketCaller:
        import websockets

        return cls(await websockets.connect(ws_url(url), max_size=2**22, open_timeout=30))

    async def _read(self) -> None:
        import websockets

        try:
            async for data in self.ws:
                frame = parse_frame(data)
                if frame.type == frame.RESPONSE and (waiter := self.waiting.pop(frame.response.id, None)):
                    waiter.set_result(frame.response)
        except websockets.ConnectionClosed:
            pass
        for waiter in self.waiting.values():
            waiter.set_exception(ConnectionError("socket closed"))

    async def call(self, method: str, path: str, body: dict, headers: dict | None = None) -> dict:
        """The JSON answer; raises on an error status."""
        lines = ["content-type:application/json"] + [f"{name}:{value}" for name, value in (headers or {}).items()]
        data = json.dumps(body).encode()
        for attempt in range(UNAVAILABLE_RETRIES + 1):
            request_id, self.next_id = self.next_id, self.next_id + 1
            waiter = self.waiting[request_id] = asyncio.get_running_loop().create_future()
            await self.ws.send(request_frame(request_id, method, path, data, lines))
            response = await waiter
            if response.status != 503 or attempt == UNAVAILABLE_RETRIES:
                break
            retry_after = [line.split(":", 1)[1] for line in response.headers if line.lower().startswith("retry-after:")]
            await asyncio.sleep(float(retry_after[0]) if retry_after else 1.0)
        if response.status >= 400:
            raise RuntimeError(f"{method} {path}: {response.status} {response.body[:200]!r}")
        return json.loads(response.body) if response.body else {}

    async def close(self) -> None:
        await self.ws.close()
        await self.reader


async def register(socket: SocketCaller, number: str, code: str) -> BenchAccount:
    session = await socket.call("POST", "/v1/verification/session", {"number": number})
    path = f"/v1/verification/session/{session['id']}/code"
    await socket.call("POST", path, {"transport": "sms", "client": "bench"})
    await socket.call("PUT", path, {"code": code})
    aci_identity, pni_identity = SigningKey.generate(), SigningKey.generate()
    password = secrets.token_urlsafe(24)
    registration_id = secrets.randbelow(16000) + 1
    access_key = os.urandom(16)
    body = {
        "sessionId": session["id"],
        "accountAttributes": {
            "fetchesMessages": True,
            "registrationId": registration_id,
            "pniRegistrationId": secrets.randbelow(16000) + 1,
            "capabilities": {"spqr": True},
            "unidentifiedAccessKey": b64(access_key),
        },
        "aciIdentityKey": b64(aci_identity.public_key),
        "pniIdentityKey": b64(pni_identity.public_key),
        "aciSignedPreKey": signed_key(aci_identity, 1, ec_key()),
        "pniSignedPreKey": signed_key(pni_identity, 2, ec_key()),
        "aciPqLastResortPreKey": signed_key(aci_identity, 3, kem_key()),
        "pniPqLastResortPreKey": signed_key(pni_identity, 4, kem_key()),
    }
    auth = "Basic " + b64(f"{number}:{password}".encode())
    registered = await socket.call("POST", "/v1/registration", body, headers={"Authorization": auth})
    return BenchAccount(registered["uuid"], number, password, registration_id, access_key, aci_identity)


async def upload_prekeys(http: httpx.AsyncClient, account: BenchAccount, count: int) -> None:
    body = {
        "preKeys": [{"keyId": 100 + i, "publicKey": b64(ec_key())} for i in range(count)],
        "pqPreKeys": [signed_key(account.identity, 1000 + i, kem_key()) for i in range(count)],
    }
    response = await http.put("/v2/keys", json=body, headers={"Authorization": account.authorization})
    response.raise_for_status()


async def register_many(url: str, count: int, code: str, *, first_number: int = 0, concurrency: int = 8) -> list[BenchAccount]:
    """`count` fresh accounts on numbers +1 201 555 xxxx counted from `first_number`, registered
    by `concurrency` clients at once, each over an unauthenticated socket of its own (as
    libsignal's registration service registers), one account after another."""
    accounts: list[BenchAccount | None] = [None] * count
    indexes = iter(range(count))

    async def client() -> None:
        socket = await SocketCaller.connect(url)
        try:
            for index in indexes:
                accounts[index] = await register(socket, f"+1201{5550000 + first_number + index:07d}", code)
        finally:
            await socket.close()

    await asyncio.gather(*(client() for _ in range(min(concurrency, count))))
    return accounts


def request_frame(request_id: int, verb: str, path: str, body: bytes = b"", headers=()) -> bytes:
    frame = WebSocketMessage(type=WebSocketMessage.REQUEST)
    frame.request.verb, frame.request.path, frame.request.id = verb, path, request_id
    frame.request.headers.extend(headers)
    if body:
        frame.request.body = body
    return frame.SerializeToString()


def ack_frame(request_id: int) -> bytes:
    frame = WebSocketMessage(type=WebSocketMessage.RESPONSE)
    frame.response.id, frame.response.status, frame.response.message = request_id, 200, "OK"
    return frame.SerializeToString()


def parse_frame(data: bytes) -> WebSocketMessage:
    frame = WebSocketMessage()
    frame.ParseFromString(data)
    return frame


def ws_url(url: str) -> str:
    return url.replace("http://", "ws://", 1).rstrip("/") + "/v1/websocket/"


async def open_socket(url: str, account: BenchAccount, on_message=None, on_response=None):
    """An authenticated delivery socket whose reader acknowledges every server request, passes
    (envelope bytes, arrival time from time.monotonic()) of each message to `on_message` and each
    response to a request of ours to `on_response`. Returns (socket, reader task)."""
    import time

    import websockets

    ws = await websockets.connect(
        ws_url(url), additional_headers={"Authorization": account.authorization}, max_size=2**22, open_timeout=30
    )

    async def read() -> None:
        keepalives = 0
        try:
            while True:
                try:
                    data = await asyncio.wait_for(ws.recv(), KEEPALIVE_SECONDS)
                except TimeoutError:  # as clients do: the server closes sockets idle for 90 s
                    keepalives += 1
                    await ws.send(request_frame(KEEPALIVE_IDS + keepalives, "GET", "/v1/keepalive"))
                    continue
                arrived = time.monotonic()  # before our own work on it: the member has it now
                frame = parse_frame(data)
                if frame.type == frame.RESPONSE and on_response is not None and frame.response.id < KEEPALIVE_IDS:
                    on_response(frame.response)
                if frame.type != frame.REQUEST:
                    continue
                if on_message is not None and frame.request.path == "/api/v1/message":
                    on_message(frame.request.body, arrived)
                await ws.send(ack_frame(frame.request.id))
        except websockets.ConnectionClosed:
            pass

    return ws, asyncio.ensure_future(read())


def raise_open_file_limit() -> int:
    """As many sockets as the hard limit allows; returns the new soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard
