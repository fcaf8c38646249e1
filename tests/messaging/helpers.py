"""Clients for messaging tests: WebSocket frames, envelopes, and send bodies."""

from __future__ import annotations

import base64

from channels.testing import WebsocketCommunicator

from messaging.envelopes import parse_envelope
from signalserver.asgi import application
from signalserver.proto.websocket_pb2 import WebSocketMessage
from tests.factories import device_auth


class Communicator(WebsocketCommunicator):
    """Channels' communicator, whose connection waits up to 10 s for the upgrade's answer (its own
    default is 1 s): authenticating reads the database and Redis, which on a loaded CI machine
    took longer now and then."""

    async def connect(self, timeout=10):
        return await super().connect(timeout)


def socket_for(device=None, *, password=None, headers=()) -> WebsocketCommunicator:
    """A communicator on the real route; authenticated when a device is given."""
    all_headers = list(headers)
    if device is not None:
        auth = device_auth(device, *([password] if password else []))
        all_headers.append((b"authorization", auth.encode()))
    return Communicator(application, "/v1/websocket/", headers=all_headers)


def parse_frame(data: bytes) -> WebSocketMessage:
    frame = WebSocketMessage()
    frame.ParseFromString(data)
    return frame


def request_frame(verb: str, path: str, *, body: bytes = b"", request_id: int = 1, headers=()) -> bytes:
    frame = WebSocketMessage(type=WebSocketMessage.REQUEST)
    frame.request.verb = verb
    frame.request.path = path
    frame.request.id = request_id
    frame.request.headers.extend(headers)
    if body:
        frame.request.body = body
    return frame.SerializeToString()


def response_frame(request_id: int, status: int = 200) -> bytes:
    frame = WebSocketMessage(type=WebSocketMessage.RESPONSE)
    frame.response.id = request_id
    frame.response.status = status
    frame.response.message = "OK"
    return frame.SerializeToString()


async def next_request(ws: WebsocketCommunicator, timeout: float = 2):
    """The next server-initiated request on the socket (skipping nothing)."""
    frame = parse_frame(await ws.receive_from(timeout=timeout))
    assert frame.type == WebSocketMessage.REQUEST, frame
    return frame.request


async def next_message(ws: WebsocketCommunicator, timeout: float = 2):
    """(request id, Envelope) of the next delivered message; fails on anything else."""
    request = await next_request(ws, timeout)
    assert (request.verb, request.path) == ("PUT", "/api/v1/message"), request
    return request.id, parse_envelope(request.body)


def message_list(device_ids_and_reg_ids, *, content=b"ciphertext", type=1, **extra) -> dict:
    """A PUT /v1/messages body addressing these (device id, registration id) pairs."""
    return {
        "messages": [
            {
                "type": type,
                "destinationDeviceId": device_id,
                "destinationRegistrationId": registration_id,
                "content": base64.b64encode(content).decode(),
            }
            for device_id, registration_id in device_ids_and_reg_ids
        ],
        **extra,
    }


def all_devices(account) -> list[tuple[int, int]]:
    return [(device.device_id, device.registration_id) for device in account.devices.order_by("device_id")]
