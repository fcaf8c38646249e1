"""What every Signal WebSocket shares (spec §4.7): WebSocketMessage framing, close codes for bad
frames, server-initiated requests and responses to client requests."""

from __future__ import annotations

import asyncio
import functools
import secrets
import time

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from google.protobuf.message import DecodeError

from signalserver.proto.websocket_pb2 import WebSocketMessage
from signalserver.tunnel import reason_phrase

CLOSE_NORMAL = 1000
CLOSE_BAD_FRAME = 1007
CLOSE_TOO_LARGE = 1009
CLOSE_SERVER_ERROR = 1011


def timestamp_header() -> str:
    return f"X-Signal-Timestamp:{time.time_ns() // 1_000_000}"


class FramedConsumer(AsyncWebsocketConsumer):
    """Parses frames, answers client requests through `handle_request`, passes client responses
    to `handle_response`; subclasses keep their tasks in `self.tasks` so a close cancels them."""

    async def websocket_connect(self, message):
        self.tasks: set[asyncio.Task] = set()
        self.closed = False
        self.last_frame = time.monotonic()
        self.upgrade_headers = {
            name.decode("latin-1").lower(): value.decode("latin-1") for name, value in self.scope["headers"]
        }
        await super().websocket_connect(message)

    async def __call__(self, scope, receive, send):
        """Channels' consumer loop, leaner: its `await_many_dispatch` waits on the socket and the
        channel layer with `asyncio.wait` and a new task for every frame (a tenth of the server's
        time in relay). Here each source has one task reading it for the socket's life, and
        a lock keeps Channels' one-message-at-a-time dispatch."""
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
        self.base_send = send
        self._dispatching = asyncio.Lock()
        readers = [asyncio.ensure_future(self._dispatch_from(receive)), asyncio.ensure_future(self._dispatch_from(self.channel_receive))]
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

    async def _dispatch_from(self, receive) -> None:
        while True:
            message = await receive()
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
        await self.accept(headers=[(b"x-signal-timestamp", timestamp_header().split(":", 1)[1].encode())])

    def spawn(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def websocket_disconnect(self, message):
        self.closed = True
        for task in list(self.tasks):
            task.cancel()
        await super().websocket_disconnect(message)

    async def receive(self, text_data=None, bytes_data=None):
        if bytes_data is None:
            return  # text frames are ignored
        self.last_frame = time.monotonic()
        if len(bytes_data) > settings.WEBSOCKET_MAX_FRAME_BYTES:
            await self.close(code=CLOSE_TOO_LARGE)
            return
        frame = WebSocketMessage()
        try:
            frame.ParseFromString(bytes_data)
        except DecodeError:
            frame.type = WebSocketMessage.UNKNOWN
        if frame.type == WebSocketMessage.REQUEST:
            self.spawn(self._answer(frame.request))
        elif frame.type == WebSocketMessage.RESPONSE:
            await self.handle_response(frame.response)
        else:
            await self.close(code=CLOSE_BAD_FRAME)

    async def _answer(self, request) -> None:
        status, body, headers = await self.handle_request(request)
        if not request.HasField("id") or self.closed:
            return
        frame = WebSocketMessage(type=WebSocketMessage.RESPONSE)
        response = frame.response
        response.id = request.id
        response.status = status
        response.message = reason_phrase(status)
        response.headers.extend(headers)
        response.headers.append(timestamp_header())
        if body:
            response.body = body
        await self.send(bytes_data=frame.SerializeToString())

    async def handle_request(self, request) -> tuple[int, bytes, tuple[str, ...]]:
        """(status, body, headers) answering a client's request; every socket kind defines it (the
        chat socket tunnels requests to the API, the provisioning socket knows a few)."""
        raise NotImplementedError  # abstract: FramedConsumer itself is never routed to

    async def handle_response(self, response) -> None:
        """A client's answer to one of our requests; unknown ids are ignored."""

    async def send_request(self, path: str, body: bytes | None) -> int:
        """Send a server-initiated `PUT path` request; returns its id."""
        request_id = secrets.randbits(63) or 1
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
