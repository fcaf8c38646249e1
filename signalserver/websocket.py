"""What every Signal WebSocket shares: WebSocketMessage framing, close codes for bad
frames, server-initiated requests and responses to client requests, and per-socket flow control.

Flow control: at most `MAX_REQUESTS_IN_FLIGHT` of a socket's requests are answered at once; while
they are, the socket is not read (its frames wait in the kernel's buffers and TCP slows the
client), so one client cannot make the process start unbounded work. Requests, and responses to
nothing we asked, also draw from a per-socket token bucket (`WEBSOCKET_FRAME_RATE` a second,
`WEBSOCKET_FRAME_BURST` at once); a client that outruns it is closed with 4429 and refused new
sockets for FLOOD_PENALTY_SECONDS. Responses to our own requests (acknowledgements of
deliveries) are free: the delivery window bounds them."""

from __future__ import annotations

import asyncio
import base64
import math
import time

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from google.protobuf.message import DecodeError

from signalserver import request_ids
from signalserver import metrics
from signalserver.errors import REDIS_UNAVAILABLE, UNAVAILABLE_RETRY_AFTER_SECONDS, log_unavailable, unavailable_dependency
from signalserver.proto.websocket_pb2 import WebSocketMessage
from signalserver.randomness import random_id
from signalserver.redis_clients import wait_for_redis
from signalserver.tunnel import inherited_headers, reason_phrase

MAX_REQUESTS_IN_FLIGHT = 16  # a socket's requests being answered at once; more wait unread
BAD_REQUEST = (400, b'{"code":400,"message":"Bad request"}', ("Content-Type:application/json",))
NOT_FOUND = (404, b'{"code":404,"message":"Not found"}', ("Content-Type:application/json",))

CLOSE_NORMAL = 1000
CLOSE_BAD_FRAME = 1007
CLOSE_TOO_LARGE = 1009
CLOSE_SERVER_ERROR = 1011
CLOSE_TOO_MANY_FRAMES = 4429  # past the socket's frame budget (4xxx: codes every server may send)

# A client whose socket was closed for outrunning its frame budget (same address, same claimed
# username) is refused new sockets this long (429): without it, a flooder reconnects at once with
# a fresh budget. Kept per process, at most MAX_PENALIZED clients.
FLOOD_PENALTY_SECONDS = 30
MAX_PENALIZED = 10_000
_penalized: dict[tuple[str, str], float] = {}  # (address, username) → monotonic end of penalty


# Answers to an upgrade refused with ASGI's `websocket.http.response`: while PostgreSQL or Redis
# is down, and while the client serves a flood penalty.
UNAVAILABLE_BODY = b'{"code":503,"message":"Service unavailable"}'
RATE_LIMITED_BODY = b'{"code":429,"message":"Rate limit exceeded"}'


async def deny_upgrade(scope, send, status: int, body: bytes, *, retry_after: int = UNAVAILABLE_RETRY_AFTER_SECONDS) -> bool:
    """Answer the upgrade with `status`, a JSON body and Retry-After; False when the server
    lacks the denial extension (daphne), and the caller must refuse another way."""
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        return False
    headers = [(b"content-type", b"application/json"), (b"retry-after", str(retry_after).encode())]
    if (request_id := request_ids.current.get()) is not None:  # the socket's (signalserver.request_ids)
        headers.append((b"x-request-id", request_id.encode()))
    await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})
    return True


def timestamp_header() -> str:
    return f"X-Signal-Timestamp:{time.time_ns() // 1_000_000}"


class FramedConsumer(AsyncWebsocketConsumer):
    """Parses frames, answers client requests through `handle_request`, passes client responses
    to `handle_response`; subclasses keep their tasks in `self.tasks` so a close cancels them.

    Outages: when PostgreSQL or Redis cannot be reached while a socket opens, the upgrade is
    answered 503 with Retry-After (close 1011 once accepted), so clients back off. An open socket
    rides out a Redis outage: its channel-layer reader waits until Redis answers again and then
    `resubscribe`s (Redis may have restarted empty)."""

    accepted = False
    closed = False
    close_sent = False
    requests_seen = 0  # the client's requests so far: each one's id is the socket's id and its number

    async def websocket_connect(self, message):
        self.tasks: set[asyncio.Task] = set()
        self.closed = False
        self.last_frame = time.monotonic()
        self.frame_tokens = float(settings.WEBSOCKET_FRAME_BURST)
        self.tokens_at = self.last_frame
        self.upgrade_headers = {
            name.decode("latin-1").lower(): value.decode("latin-1") for name, value in self.scope["headers"]
        }
        self.inherited_headers = inherited_headers(self.upgrade_headers)  # of every tunnelled request
        try:
            await super().websocket_connect(message)
        except Exception as error:
            dependency = unavailable_dependency(error)
            if dependency is None:
                raise
            log_unavailable(dependency)
            await self._refuse_unavailable()

    async def _refuse_unavailable(self) -> None:
        self.closed = True
        if self.accepted or not await deny_upgrade(self.scope, self.base_send, 503, UNAVAILABLE_BODY):
            # Accepted already, or a server without the denial extension (daphne): close 1011.
            if not self.accepted:
                await self.accept()
            await self.close(code=CLOSE_SERVER_ERROR)

    async def accept(self, subprotocol=None, headers=None):
        if not self.accepted:
            # The route is one of the few of signalserver.routing, never a client's path.
            self.open_sockets = metrics.OPEN_SOCKETS.labels(self.scope["path"])
            self.open_sockets.inc()
        self.accepted = True
        await super().accept(subprotocol, headers)

    async def close(self, code=None, reason=None):
        """Close once: frames read before the close went out are still dispatched (and may
        close again, e.g. a flood past its frame budget); the server refuses a second close."""
        if self.close_sent:
            return
        self.close_sent = True
        try:
            await super().close(code=code, reason=reason)
        except Exception:
            if code in (None, CLOSE_NORMAL) or not self.accepted:
                raise
            # daphne (autobahn, `make run`) refuses protocol codes (1007, 1009, 1011) from a server:
            # it raises before sending anything, and the socket still has to close.
            await super().close(code=CLOSE_NORMAL)

    async def __call__(self, scope, receive, send):
        """Channels' consumer loop, leaner: its `await_many_dispatch` waits on the socket and the
        channel layer with `asyncio.wait` and a new task for every frame (a tenth of the server's
        time in relay). Here each source has one task reading it for the socket's life, and
        a lock keeps Channels' one-message-at-a-time dispatch."""
        if (wait := _penalty_left(_client_key(scope))) > 0:
            # Refused before anything is set up for it: a flooder retries as fast as it can.
            await receive()  # websocket.connect
            if not await deny_upgrade(scope, send, 429, RATE_LIMITED_BODY, retry_after=wait):
                await send({"type": "websocket.close"})  # before accept: answered 403
            return
        self.scope = scope
        self.socket_id = request_ids.current.get() or request_ids.new_id()  # its request id
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.base_send = send
        self._dispatching = asyncio.Lock()
        self.request_slots = asyncio.Semaphore(MAX_REQUESTS_IN_FLIGHT)
        readers = [asyncio.ensure_future(self._read_socket(receive)), asyncio.ensure_future(self._dispatch_from(self._receive_from_layer))]
        try:
            done, _ = await asyncio.wait(readers, return_when=asyncio.FIRST_COMPLETED)
            for reader in done:
                reader.result()  # a handler's error ends the consumer, as in Channels
        except StopConsumer:
            pass
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            if hasattr(self.channel_layer, "forget"):  # no late message waits for this socket
                self.channel_layer.forget(self.channel_name)
            if self.accepted:
                self.open_sockets.dec()
            # A reader's exception (StopConsumer, CancelledError) keeps its traceback, which
            # passed through this frame: readers → task → exception → traceback → this frame →
            # readers. Left as a cycle (like a bound method of the consumer kept on it, which is
            # why the layer's reader is not stored as Channels stores `channel_receive`), a closed
            # socket (consumer, protocol, transport, tasks) waits for a full garbage collection,
            # which the tuned thresholds (asgi.py) make rare: the server's memory grew run by run.
            readers = done = reader = None

    async def _dispatch_from(self, receive) -> None:
        while True:
            message = await receive()
            async with self._dispatching:
                await self.dispatch(message)

    async def _receive_from_layer(self) -> dict:
        """The socket's next channel-layer message; across a Redis outage, see the class."""
        while True:
            try:
                return await self.channel_layer.receive(self.channel_name)
            except (*REDIS_UNAVAILABLE, OSError):
                log_unavailable("redis")
            while True:
                await wait_for_redis()
                try:
                    async with self._dispatching:
                        if not self.closed:
                            await self.resubscribe()
                    break
                except (*REDIS_UNAVAILABLE, OSError):
                    continue  # gone again

    async def resubscribe(self) -> None:
        """Redis answers again after an outage: join the socket's groups again. Subclasses renew
        what else they keep in Redis and catch up on what they missed meanwhile."""
        for group in self.groups:
            await self.channel_layer.group_add(group, self.channel_name)

    async def _read_socket(self, receive) -> None:
        """Like `_dispatch_from`, but a frame is read only once a request slot is free; `receive`
        hands the slot to the request's task, or gives it back at once for any other frame."""
        while True:
            await self.request_slots.acquire()
            message = await receive()
            if message["type"] != "websocket.receive":
                self.request_slots.release()
            async with self._dispatching:
                await self.dispatch(message)

    async def dispatch(self, message):
        # Channels' dispatch first closes stale database connections on the thread-sensitive sync
        # thread: one thread hop per frame and per channel event, every socket of the process
        # queued behind one thread. The event loop's thread holds no connection; our database
        # work runs through `in_db_thread`, whose threads look after their own.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)

    async def accept_with_timestamp(self):
        timestamp = timestamp_header().split(":", 1)[1].encode()
        await self.accept(headers=[(b"x-signal-timestamp", timestamp), (b"x-request-id", self.socket_id.encode())])

    def spawn(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def websocket_disconnect(self, message):
        self.closed = True
        for task in list(self.tasks):
            task.cancel()
        groups, self.groups = self.groups, []  # left here, so that Channels' leaving is a no-op
        for group in groups:
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except REDIS_UNAVAILABLE:
                pass  # Redis is down: it lost the group, or the entry expires with the group
        await super().websocket_disconnect(message)

    async def receive(self, text_data=None, bytes_data=None):
        """One frame, read holding a request slot (see `_read_socket`): a request's task takes the
        slot over, any other frame gives it back."""
        handed_over = False
        try:
            handed_over = await self._receive_frame(bytes_data)
        finally:
            if not handed_over:
                self.request_slots.release()

    async def _receive_frame(self, bytes_data) -> bool:
        """True when a task now answers the frame (and holds its slot)."""
        if bytes_data is None or self.close_sent:
            return False  # text frames are ignored, and anything after our close
        self.last_frame = time.monotonic()
        if len(bytes_data) > settings.WEBSOCKET_MAX_FRAME_BYTES:
            await self.close(code=CLOSE_TOO_LARGE)
            return False
        frame = WebSocketMessage()
        try:
            frame.ParseFromString(bytes_data)
        except DecodeError:
            frame.type = WebSocketMessage.UNKNOWN
        if frame.type == WebSocketMessage.REQUEST:
            if self._spend_token():
                self.spawn(self._answer(frame.request))
                return True
            await self._close_flooded()
        elif frame.type == WebSocketMessage.RESPONSE:
            if not await self.handle_response(frame.response) and not self._spend_token():
                await self._close_flooded()
        else:
            await self.close(code=CLOSE_BAD_FRAME)
        return False

    async def _close_flooded(self) -> None:
        if not self.close_sent:
            _penalize(_client_key(self.scope))
        await self.close(code=CLOSE_TOO_MANY_FRAMES)

    def _spend_token(self) -> bool:
        """Take one frame's token from the socket's bucket; False when it is empty."""
        now = self.last_frame
        self.frame_tokens = min(
            settings.WEBSOCKET_FRAME_BURST, self.frame_tokens + (now - self.tokens_at) * settings.WEBSOCKET_FRAME_RATE
        )
        self.tokens_at = now
        if self.frame_tokens < 1:
            return False
        self.frame_tokens -= 1
        return True

    async def _answer(self, request) -> None:
        # This task's lines, and the Celery tasks it queues, carry the request's own id.
        self.requests_seen += 1
        request_id = f"{self.socket_id}.{self.requests_seen:x}"
        request_ids.current.set(request_id)
        try:
            if _well_formed(request):
                status, body, headers = await self.handle_request(request)
            else:
                status, body, headers = BAD_REQUEST
        finally:
            self.request_slots.release()
        if not request.HasField("id") or self.closed:
            return
        frame = WebSocketMessage(type=WebSocketMessage.RESPONSE)
        response = frame.response
        response.id = request.id
        response.status = status
        response.message = reason_phrase(status)
        response.headers.extend(headers)
        response.headers.append(timestamp_header())
        response.headers.append(f"{request_ids.HEADER}:{request_id}")
        if body:
            response.body = body
        await self.send(bytes_data=frame.SerializeToString())

    async def handle_request(self, request) -> tuple[int, bytes, tuple[str, ...]]:
        """(status, body, headers) answering a client's request: 404 for a socket that serves
        none; the chat socket tunnels requests to the API, the provisioning socket knows a few."""
        return NOT_FOUND

    async def handle_response(self, response) -> bool:
        """A client's answer to one of our requests: True when it answers one we are waiting for
        (others are ignored, but cost the socket a frame token)."""
        return False

    async def send_request(self, path: str, body: bytes | None) -> int:
        """Send a server-initiated `PUT path` request; returns its id."""
        request_id = random_id(63)
        frame = WebSocketMessage(type=WebSocketMessage.REQUEST)
        frame.request.verb = "PUT"
        frame.request.path = path
        frame.request.id = request_id
        frame.request.headers.append(timestamp_header())
        if body is not None:
            frame.request.body = body
        await self.send(bytes_data=frame.SerializeToString())
        return request_id

    async def close_after_idle(self, idle_seconds: float, check_every: float) -> None:
        """Close (1000) once no frame has arrived for `idle_seconds`."""
        while True:
            await asyncio.sleep(check_every)
            if time.monotonic() - self.last_frame > idle_seconds:
                await self.close(code=CLOSE_NORMAL)
                return


def _client_key(scope) -> tuple[str, str]:
    """Who opens a socket, for the flood penalty: the address, and the username its credentials
    claim (unchecked: only that same claim from that same address is refused)."""
    address = (scope.get("client") or ("",))[0] or ""
    authorization = next((value for name, value in scope["headers"] if name.lower() == b"authorization"), b"")
    scheme, _, token = authorization.partition(b" ")
    username = token
    if scheme.lower() == b"basic":
        try:
            username = base64.b64decode(token, validate=True).partition(b":")[0]
        except ValueError:
            pass
    return address, username[:200].decode("latin-1")


def _penalize(client: tuple[str, str]) -> None:
    if len(_penalized) >= MAX_PENALIZED:
        del _penalized[next(iter(_penalized))]  # the oldest
    _penalized.pop(client, None)
    _penalized[client] = time.monotonic() + FLOOD_PENALTY_SECONDS


def forget_flood_penalties() -> None:
    """Lift every flood penalty of this process (tests start from none)."""
    _penalized.clear()


def _penalty_left(client: tuple[str, str]) -> int:
    """Whole seconds until `client` may open sockets again (0: now)."""
    until = _penalized.get(client)
    if until is None:
        return 0
    left = until - time.monotonic()
    if left <= 0:
        del _penalized[client]
        return 0
    return math.ceil(left)


def _well_formed(request) -> bool:
    """Whether a request frame can be answered: a verb and a path, and its strings UTF-8 (proto2
    strings that are not come out of the parser as bytes)."""
    return (
        isinstance(request.verb, str)
        and isinstance(request.path, str)
        and bool(request.verb)
        and request.path.startswith("/")
        and all(isinstance(header, str) for header in request.headers)
    )
