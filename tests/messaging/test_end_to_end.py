"""End to end: the real ASGI server in its own process, clients over real sockets (DESIGN.md §9)."""

import asyncio
import json
import time

import httpx
import pytest
import websockets
from asgiref.sync import sync_to_async

from messaging.envelopes import parse_envelope
from messaging.models import QueuedMessage
from signalserver.proto.websocket_pb2 import WebSocketMessage
from tests.factories import DeviceFactory, device_auth
from tests.messaging.helpers import message_list, request_frame, response_frame
from tests.servers import running_server, start_server

pytestmark = pytest.mark.django_db(transaction=True)


def frame_of(data: bytes) -> WebSocketMessage:
    frame = WebSocketMessage()
    frame.ParseFromString(data)
    return frame


async def connect(server, device):
    return await websockets.connect(
        f"{server.ws_url}/v1/websocket/", additional_headers={"Authorization": device_auth(device)}
    )


async def next_server_request(ws, timeout=3.0):
    while True:
        frame = frame_of(await asyncio.wait_for(ws.recv(), timeout))
        if frame.type == WebSocketMessage.REQUEST:
            return frame.request


async def drain_until_queue_empty(ws):
    """Everything delivered before `/api/v1/queue/empty`, unacknowledged."""
    delivered = []
    while True:
        request = await next_server_request(ws)
        if request.path == "/api/v1/queue/empty":
            return delivered
        delivered.append(request)


def send_over_http(server, sender, recipient, content: bytes):
    body = message_list([(1, recipient.registration_id)], content=content, timestamp=1234)
    response = httpx.put(
        f"{server.url}/v1/messages/{recipient.account_id}",
        json=body,
        headers={"Authorization": device_auth(sender)},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response


@pytest.fixture
def pair(transactional_db):
    return DeviceFactory.create_batch(2)


async def test_a_message_arrives_in_under_a_second_is_acked_then_never_redelivered_and_receipted(pair):
    alice, bob = pair
    with running_server() as server:
        alice_ws, bob_ws = await connect(server, alice), await connect(server, bob)
        assert await drain_until_queue_empty(alice_ws) == []
        assert await drain_until_queue_empty(bob_ws) == []

        started = time.monotonic()
        await sync_to_async(send_over_http)(server, alice, bob, b"over http")
        delivery = await next_server_request(bob_ws)
        latency = time.monotonic() - started
        envelope = parse_envelope(delivery.body)
        assert (delivery.verb, delivery.path) == ("PUT", "/api/v1/message")
        assert envelope.content == b"over http" and latency < 1.0
        await bob_ws.send(response_frame(delivery.id, 200))

        receipt = parse_envelope((await next_server_request(alice_ws)).body)
        assert receipt.type == 5 and receipt.client_timestamp == 1234

        # The same over the sender's own socket, tunnelled.
        body = json.dumps(message_list([(1, bob.registration_id)], content=b"over the socket")).encode()
        started = time.monotonic()
        await alice_ws.send(request_frame("PUT", f"/v1/messages/{bob.account_id}", body=body, request_id=77))
        delivery = await next_server_request(bob_ws)
        assert parse_envelope(delivery.body).content == b"over the socket"
        assert time.monotonic() - started < 1.0
        await bob_ws.send(response_frame(delivery.id, 200))
        await asyncio.sleep(0.3)  # let the acks' batched delete run
        await bob_ws.close()

        again = await connect(server, bob)
        assert await drain_until_queue_empty(again) == []  # nothing comes back
        await again.close()
        await alice_ws.close()
    assert not await sync_to_async(QueuedMessage.objects.filter(device=bob).exists)()


async def test_an_unacknowledged_message_is_delivered_again_after_reconnecting(pair):
    alice, bob = pair
    with running_server() as server:
        bob_ws = await connect(server, bob)
        await drain_until_queue_empty(bob_ws)
        await sync_to_async(send_over_http)(server, alice, bob, b"keep me")
        first = parse_envelope((await next_server_request(bob_ws)).body)
        await bob_ws.close()

        again = await connect(server, bob)
        [redelivered] = await drain_until_queue_empty(again)
        assert parse_envelope(redelivered.body).server_guid == first.server_guid
        await again.close()


async def test_killing_the_server_between_send_and_ack_loses_nothing(pair):
    alice, bob = pair
    server = await sync_to_async(start_server)()
    try:
        bob_ws = await connect(server, bob)
        await drain_until_queue_empty(bob_ws)
        await sync_to_async(send_over_http)(server, alice, bob, b"survives a crash")
        delivered = await next_server_request(bob_ws)  # delivered, not acknowledged
        assert parse_envelope(delivered.body).content == b"survives a crash"
    finally:
        server.kill()
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(bob_ws.recv(), 5)

    with running_server() as restarted:
        bob_ws = await connect(restarted, bob)
        [redelivered] = await drain_until_queue_empty(bob_ws)
        assert parse_envelope(redelivered.body).content == b"survives a crash"
        await bob_ws.close()


async def test_a_newer_socket_displaces_the_older_with_4409(pair):
    bob = pair[1]
    with running_server() as server:
        old = await connect(server, bob)
        await drain_until_queue_empty(old)
        new = await connect(server, bob)
        await drain_until_queue_empty(new)

        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(old.recv(), 5)
        assert closed.value.rcvd.code == 4409
        await new.send(request_frame("GET", "/v1/keepalive", request_id=5))
        assert frame_of(await asyncio.wait_for(new.recv(), 5)).response.status == 200
        await new.close()


async def test_wrong_credentials_refuse_the_upgrade_with_403(pair):
    with running_server() as server:
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(
                f"{server.ws_url}/v1/websocket/",
                additional_headers={"Authorization": device_auth(pair[0], "definitely-not-the-password")},
            )
        assert refused.value.response.status_code == 403
        anonymous = await websockets.connect(f"{server.ws_url}/v1/websocket/")  # no credentials: accepted
        await anonymous.send(request_frame("GET", "/v1/keepalive", request_id=1))
        assert frame_of(await asyncio.wait_for(anonymous.recv(), 5)).response.status == 200
        await anonymous.close()
