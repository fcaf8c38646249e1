"""The chat WebSocket on the real route: delivery, acks, tunnelling, close codes."""

import asyncio
import json
import time
import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.test import AsyncClient
from rest_framework.test import APIClient

from signalserver import purges
from messaging.models import QueuedMessage
from signalserver.proto.websocket_pb2 import WebSocketMessage
from tests.factories import DeviceFactory, device_auth, override_limit
from tests.fakes.apns import apns_credentials, apns_server, apns_settings  # noqa: F401 (fixtures)
from tests.messaging.helpers import (
    message_list,
    next_message,
    next_request,
    parse_frame,
    request_frame,
    response_frame,
    socket_for,
)

pytestmark = pytest.mark.django_db(transaction=True)


def send_rest(sender, recipient, *, content=b"ciphertext", **extra):
    """PUT /v1/messages from `sender` to every device of `recipient`'s account (sync, for threads)."""
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=device_auth(sender))
    devices = [(d.device_id, d.registration_id) for d in recipient.account.devices.order_by("device_id")]
    response = api.put(f"/v1/messages/{recipient.account_id}", message_list(devices, content=content, **extra), format="json")
    assert response.status_code == 200, response.content
    return response


async def connected(device=None, **kwargs):
    ws = socket_for(device, **kwargs)
    ok, _ = await ws.connect()
    assert ok
    return ws


async def queue_empty(ws):
    request = await next_request(ws)
    assert (request.verb, request.path) == ("PUT", "/api/v1/queue/empty")
    return request


async def tunnel(ws, verb, path, body=None, request_id=7, headers=()):
    payload = json.dumps(body).encode() if body is not None else b""
    await ws.send_to(bytes_data=request_frame(verb, path, body=payload, request_id=request_id, headers=headers))
    frame = parse_frame(await ws.receive_from(timeout=3))
    assert frame.type == WebSocketMessage.RESPONSE
    assert frame.response.id == request_id
    return frame.response


def header_names(response):
    return {line.split(":", 1)[0].lower(): line.split(":", 1)[1] for line in response.headers}


@pytest.fixture
async def pair():
    return await sync_to_async(DeviceFactory.create_batch)(2)


# --- Upgrade --------------------------------------------------------------------------------------


async def test_wrong_credentials_refuse_the_upgrade(pair):
    ws = socket_for(pair[0], password="not-the-password-at-all")
    connected_, _ = await ws.connect()
    assert not connected_  # closed before accept: the server answers the upgrade with 403


async def test_legacy_query_string_credentials_are_accepted(pair):
    device = pair[0]
    from channels.testing import WebsocketCommunicator

    from signalserver.asgi import application
    from tests.factories import DEFAULT_PASSWORD

    ws = WebsocketCommunicator(application, f"/v1/websocket/?login={device.account_id}.1&password={DEFAULT_PASSWORD}")
    assert (await ws.connect())[0]
    await queue_empty(ws)
    await ws.disconnect()


# --- Delivery ------------------------------------------------------------------------------------


async def test_backlog_is_delivered_oldest_first_then_queue_empty(pair):
    alice, bob = pair
    for text in (b"first", b"second", b"third"):
        await sync_to_async(send_rest)(alice, bob, content=text)

    ws = await connected(bob)
    contents = [(await next_message(ws))[1].content for _ in range(3)]
    request = await queue_empty(ws)

    assert contents == [b"first", b"second", b"third"]
    assert any(h.startswith("X-Signal-Timestamp:") for h in request.headers)
    await ws.disconnect()


async def test_a_live_message_arrives_and_its_ack_deletes_it_and_sends_a_receipt(pair):
    alice, bob = pair
    alice_ws = await connected(alice)
    await queue_empty(alice_ws)
    bob_ws = await connected(bob)
    await queue_empty(bob_ws)

    await sync_to_async(send_rest)(alice, bob, timestamp=99)
    request_id, envelope = await next_message(bob_ws)
    assert envelope.content == b"ciphertext"
    assert not envelope.HasField("ephemeral")
    await bob_ws.send_to(bytes_data=response_frame(request_id, 200))

    _, receipt = await next_message(alice_ws)
    assert receipt.type == 5 and receipt.client_timestamp == 99
    assert receipt.source_service_id == bob.account_id.bytes
    assert not await database_sync_to_async(QueuedMessage.objects.filter(device=bob).exists)()
    await bob_ws.disconnect()
    await alice_ws.disconnect()


async def test_a_message_notified_while_the_socket_reads_its_queue_is_delivered(pair, monkeypatch):
    """A row committed after the socket's read of the table took its snapshot, and notified before
    that read returned, is neither in what was read nor dropped: it is delivered."""
    import time as clock

    import messaging.consumers
    from messaging.services import list_queued

    alice, bob = pair
    reads = []

    def read_then_send(**kwargs):
        rows = list_queued(**kwargs)
        if not reads:  # the first read, the backlog: a message commits and is notified meanwhile
            send_rest(alice, bob, content=b"during the read")
            clock.sleep(0.3)  # the notification reaches the socket before this read returns
        reads.append(len(rows))
        return rows

    monkeypatch.setattr(messaging.consumers, "list_queued", read_then_send)
    bob_ws = await connected(bob)
    await queue_empty(bob_ws)
    _, envelope = await next_message(bob_ws)
    assert envelope.content == b"during the read"
    await bob_ws.disconnect()


async def test_a_non_2xx_ack_keeps_the_message_for_the_next_connection_only(pair):
    alice, bob = pair
    ws = await connected(bob)
    await queue_empty(ws)
    await sync_to_async(send_rest)(alice, bob, content=b"keep")
    request_id, envelope = await next_message(ws)
    await ws.send_to(bytes_data=response_frame(request_id, 500))
    await sync_to_async(send_rest)(alice, bob, content=b"next")

    _, following = await next_message(ws)
    assert following.content == b"next"  # the refused one is not resent on this connection
    await ws.disconnect()

    again = await connected(bob)
    _, redelivered = await next_message(again)
    assert redelivered.server_guid == envelope.server_guid
    await again.disconnect()


async def test_an_unacknowledged_message_is_delivered_again_after_reconnecting(pair):
    alice, bob = pair
    await sync_to_async(send_rest)(alice, bob)
    ws = await connected(bob)
    _, first = await next_message(ws)
    await ws.disconnect()

    ws = await connected(bob)
    _, second = await next_message(ws)
    assert second.server_guid == first.server_guid
    await ws.disconnect()


async def test_at_most_256_deliveries_are_outstanding(pair):
    alice, bob = pair
    await sync_to_async(_queue_many)(alice, bob, 260)

    ws = await connected(bob)
    ids = [(await next_message(ws))[0] for _ in range(256)]
    assert await ws.receive_nothing(timeout=0.3)

    await ws.send_to(bytes_data=response_frame(ids[0]))
    await next_message(ws)  # the 257th, once there is room
    await ws.disconnect()


def _queue_many(alice, bob, count):
    override_limit("messages", count, 1, account=alice.account)
    for _ in range(count):
        send_rest(alice, bob)


async def test_acks_of_unknown_request_ids_are_ignored(pair):
    alice, bob = pair
    await sync_to_async(send_rest)(alice, bob)
    ws = await connected(bob)
    await next_message(ws)
    await ws.send_to(bytes_data=response_frame(12345, 200))
    await queue_empty(ws)
    await ws.disconnect()
    assert await database_sync_to_async(QueuedMessage.objects.count)() == 1


async def test_an_online_message_reaches_a_connected_device_and_is_never_stored(pair):
    alice, bob = pair
    ws = await connected(bob)
    await queue_empty(ws)

    await sync_to_async(send_rest)(alice, bob, online=True)

    request_id, envelope = await next_message(ws)
    assert envelope.content == b"ciphertext" and not envelope.HasField("ephemeral")
    assert not await database_sync_to_async(QueuedMessage.objects.exists)()
    await ws.send_to(bytes_data=response_frame(request_id))
    await ws.disconnect()


async def test_stories_reach_only_sockets_that_asked_for_them_and_are_dropped_elsewhere(pair):
    bob = pair[1]
    api = APIClient()
    body = message_list([(1, bob.registration_id)], type=6, content=b"story")
    response = await sync_to_async(api.put)(f"/v1/messages/{bob.account_id}?story=true", body, format="json")
    assert response.status_code == 200

    ws = await connected(bob)
    await queue_empty(ws)  # the story was not for this socket
    await ws.disconnect()
    for _ in range(20):
        if not await database_sync_to_async(QueuedMessage.objects.exists)():
            break
        await asyncio.sleep(0.05)
    assert not await database_sync_to_async(QueuedMessage.objects.exists)()

    await sync_to_async(api.put)(f"/v1/messages/{bob.account_id}?story=true", body, format="json")
    ws = await connected(bob, headers=[(b"x-signal-receive-stories", b"true")])
    _, envelope = await next_message(ws)
    assert envelope.story is True
    await ws.disconnect()


async def test_a_socket_with_messages_disabled_gets_no_deliveries(pair):
    alice, bob = pair
    await sync_to_async(send_rest)(alice, bob)
    ws = await connected(bob, headers=[(b"x-signal-disable-messages", b"true")])
    assert await ws.receive_nothing(timeout=0.3)
    response = await tunnel(ws, "GET", "/v1/keepalive")
    assert response.status == 200
    await ws.disconnect()


# --- One delivery socket per device -------------------------------------------------------------


async def test_a_newer_socket_displaces_the_older_with_4409(pair):
    bob = pair[1]
    old = await connected(bob)
    await queue_empty(old)

    new = await connected(bob)
    await queue_empty(new)

    assert (await old.receive_output(timeout=2)) == {"type": "websocket.close", "code": 4409}
    response = await tunnel(new, "GET", "/v1/keepalive")
    assert response.status == 200
    await new.disconnect()


async def test_a_socket_that_lost_its_device_to_another_finds_out_at_its_keepalive_and_closes_with_4409(pair, monkeypatch):
    from messaging import consumers
    from messaging.presence import get_presence

    monkeypatch.setattr(consumers, "KEEPALIVE_PRESENCE_CHECK_SECONDS", 0)  # every keepalive checks
    bob = pair[1]
    old = await connected(bob)
    await queue_empty(old)
    # Taken over without the displacement notice reaching this socket (e.g. it was lost with a node).
    await get_presence().claim(bob.account_id, 1, f"specific.{uuid.uuid4().hex}!elsewhere")

    await old.send_to(bytes_data=request_frame("GET", "/v1/keepalive"))
    assert (await old.receive_output(timeout=2)) == {"type": "websocket.close", "code": 4409}


async def test_deleting_the_account_closes_its_sockets_with_4401(pair):
    bob = pair[1]
    ws = await connected(bob)
    await queue_empty(ws)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=device_auth(bob))

    assert (await sync_to_async(api.delete)("/v1/accounts/me")).status_code == 204

    assert (await ws.receive_output(timeout=2)) == {"type": "websocket.close", "code": 4401}


# --- Frames --------------------------------------------------------------------------------------


async def test_an_unparseable_frame_closes_with_1007(pair):
    ws = await connected(pair[0])
    await queue_empty(ws)
    await ws.send_to(bytes_data=b"\xff\xff\xff")
    assert (await ws.receive_output(timeout=2)) == {"type": "websocket.close", "code": 1007}


async def test_a_frame_of_type_unknown_closes_with_1007():
    ws = await connected()
    await ws.send_to(bytes_data=WebSocketMessage(type=WebSocketMessage.UNKNOWN).SerializeToString())
    assert (await ws.receive_output(timeout=2)) == {"type": "websocket.close", "code": 1007}


async def test_an_oversized_frame_closes_with_1009(settings):
    settings.WEBSOCKET_MAX_FRAME_BYTES = 1024
    ws = await connected()
    await ws.send_to(bytes_data=request_frame("PUT", "/v1/keepalive", body=b"x" * 2000))
    assert (await ws.receive_output(timeout=2)) == {"type": "websocket.close", "code": 1009}


async def test_text_frames_are_ignored():
    ws = await connected()
    await ws.send_to(text_data="hello")
    assert (await tunnel(ws, "GET", "/v1/keepalive")).status == 200
    await ws.disconnect()


# --- Tunnelled requests --------------------------------------------------------------------------


async def test_a_send_tunnelled_over_the_senders_socket_is_delivered(pair):
    alice, bob = pair
    alice_ws = await connected(alice)
    await queue_empty(alice_ws)
    bob_ws = await connected(bob)
    await queue_empty(bob_ws)

    body = message_list([(1, bob.registration_id)], content=b"via socket")
    response = await tunnel(alice_ws, "PUT", f"/v1/messages/{bob.account_id}", body, headers=["Content-Type:application/json"])

    assert response.status == 200 and response.message == "OK"
    assert json.loads(response.body) == {"needsSync": False}
    headers = header_names(response)
    assert headers["content-type"] == "application/json" and "x-signal-timestamp" in headers
    _, envelope = await next_message(bob_ws)
    assert envelope.content == b"via socket"
    assert envelope.source_service_id == alice.account_id.bytes
    await alice_ws.disconnect()
    await bob_ws.disconnect()


async def test_tunnelled_errors_use_the_same_bodies_as_http(pair):
    alice, bob = pair
    ws = await connected(alice)
    await queue_empty(ws)

    response = await tunnel(ws, "PUT", f"/v1/messages/{bob.account_id}", message_list([(2, 1)]))

    assert response.status == 409
    assert json.loads(response.body) == {"missingDevices": [1], "extraDevices": [2]}
    malformed = await tunnel(ws, "PUT", f"/v1/messages/{bob.account_id}", request_id=8)
    assert malformed.status == 400
    await ws.disconnect()


async def test_any_endpoint_is_served_over_the_authenticated_socket_as_its_device(pair):
    alice = pair[0]
    ws = await connected(alice)
    await queue_empty(ws)

    response = await tunnel(ws, "GET", "/v1/accounts/whoami")

    assert response.status == 200
    assert json.loads(response.body)["uuid"] == str(alice.account_id)
    assert (await tunnel(ws, "GET", "/v1/no/such/route", request_id=9)).status == 404
    await ws.disconnect()


async def test_the_unauthenticated_socket_ignores_authorization_headers_in_frames(pair):
    alice = pair[0]
    ws = await connected()

    response = await tunnel(ws, "GET", "/v1/accounts/whoami", headers=[f"Authorization:{device_auth(alice)}"])
    assert response.status == 401
    send = await tunnel(ws, "PUT", f"/v1/messages/{pair[1].account_id}", message_list([(1, 1)]), request_id=8)
    assert send.status == 401
    await ws.disconnect()


async def test_unauthenticated_socket_serves_anonymous_endpoints(pair):
    ws = await connected()

    response = await tunnel(ws, "HEAD", f"/v1/accounts/account/{pair[0].account_id}")
    missing = await tunnel(ws, "HEAD", "/v1/accounts/account/00000000-0000-4000-8000-000000000000", request_id=8)

    assert (response.status, missing.status) == (200, 404)
    await ws.disconnect()


async def test_requests_without_an_id_get_no_response():
    ws = await connected()
    frame = WebSocketMessage(type=WebSocketMessage.REQUEST)
    frame.request.verb, frame.request.path = "GET", "/v1/keepalive"
    await ws.send_to(bytes_data=frame.SerializeToString())
    assert await ws.receive_nothing(timeout=0.3)
    await ws.disconnect()


# --- Long polling (our extension) -----------------------------------------------------------------


def long_poll(device, wait: str):
    return AsyncClient().get("/v1/messages", {"wait": wait}, headers={"Authorization": device_auth(device)})


async def test_a_long_poll_answers_as_soon_as_a_message_arrives(pair):
    alice, bob = pair
    poll = asyncio.ensure_future(long_poll(bob, "10"))
    await asyncio.sleep(0.3)
    assert not poll.done()

    started = time.monotonic()
    await sync_to_async(send_rest)(alice, bob, content=b"polled")
    response = await asyncio.wait_for(poll, timeout=5)

    assert time.monotonic() - started < 2
    assert response.status_code == 200
    assert len(response.json()["messages"]) == 1


async def test_a_long_poll_without_messages_answers_empty_after_the_wait(pair):
    started = time.monotonic()

    response = await long_poll(pair[0], "1")

    assert 0.9 < time.monotonic() - started < 3
    assert response.json() == {"messages": [], "more": False}


@pytest.mark.parametrize("wait", ["0", "31", "x"])
async def test_a_long_poll_wait_out_of_range_is_422(pair, wait):
    assert (await long_poll(pair[0], wait)).status_code == 422


async def test_a_long_poll_without_credentials_is_401():
    assert (await AsyncClient().get("/v1/messages", {"wait": "1"})).status_code == 401


# --- Embedded run -------------------------------------------------------------------------------


async def test_without_beat_a_connecting_device_triggers_the_hourly_purge(pair, settings, monkeypatch):
    alice, bob = pair
    await sync_to_async(send_rest)(alice, bob)
    await database_sync_to_async(QueuedMessage.objects.update)(queued_hour=0)
    settings.CELERY_TASK_ALWAYS_EAGER = True
    monkeypatch.setattr(purges, "_last_run", -1e9)

    ws = await connected(alice)
    await queue_empty(ws)
    await ws.disconnect()

    assert not await database_sync_to_async(QueuedMessage.objects.exists)()


async def test_a_full_delivery_channel_gets_its_device_pushed_and_the_other_devices_still_notified(
    pair, settings, apns_settings  # noqa: F811
):
    from channels.exceptions import ChannelFull
    from channels.layers import get_channel_layer

    from messaging.presence import get_presence

    layers = {**settings.CHANNEL_LAYERS}
    layers["default"] = {**layers["default"], "CONFIG": {**layers["default"]["CONFIG"], "capacity": 50}}
    settings.CHANNEL_LAYERS = layers  # a small capacity, quick to fill
    alice, bob = pair
    bob.apn_id = "d4" * 32
    await sync_to_async(bob.save)(update_fields=["apn_id"])
    bob_laptop = await sync_to_async(DeviceFactory)(account=bob.account, device_id=2)
    # Bob's phone "holds a socket" on a node that stopped reading: its channel is full. (A channel of
    # this process's layer would not do: the layer reads all of its channels from one list.)
    layer = get_channel_layer()
    stuck = f"specific.{uuid.uuid4().hex}!{uuid.uuid4().hex}"
    await get_presence().claim(bob.account_id, 1, stuck)
    with pytest.raises(ChannelFull):
        for _ in range(51):
            await layer.send(stuck, {"type": "queue.available"})
    laptop_ws = await connected(bob_laptop)
    await queue_empty(laptop_ws)

    await sync_to_async(send_rest)(alice, bob)

    _, envelope = await next_message(laptop_ws)
    assert envelope.content == b"ciphertext"
    # The phone is pushed (Celery runs eagerly in the tests) once every socket has been handed its rows.
    (push,) = await sync_to_async(apns_settings.wait_for)(1, timeout=5)
    assert (push.token, push.push_type) == (bob.apn_id, "alert")
    assert await database_sync_to_async(QueuedMessage.objects.filter(device__device_id=1, device__account=bob.account).count)() == 1
    await laptop_ws.disconnect()


async def test_a_closed_socket_is_freed_by_reference_counting_alone(pair):
    """The server collects cyclic garbage rarely (signalserver/asgi.py tunes the collector): a
    closed socket left in a reference cycle (its consumer, the readers' tasks, their exceptions'
    tracebacks) stayed in memory until a full collection, and the server grew run after run."""
    import gc

    from signalserver.websocket import FramedConsumer

    def live_consumers():
        # type(), not isinstance(): a weak proxy to a dead object among them raises on the latter.
        return sum(issubclass(type(o), FramedConsumer) for o in gc.get_objects())

    gc.collect()
    gc.disable()
    try:
        before = live_consumers()
        ws = await connected(pair[0])
        await queue_empty(ws)
        response = await tunnel(ws, "GET", "/v1/keepalive")
        assert response.status == 200
        await ws.disconnect()
        del ws
        await asyncio.sleep(0.1)  # the consumer's tasks finish their cancellation
        assert live_consumers() == before
    finally:
        gc.enable()


async def test_a_closed_socket_is_forgotten_by_the_channel_layer(pair):
    """A message sent to a socket just as it closed must not leave a buffer behind in its process
    (signalserver.redis_clients.ChannelLayer.forget)."""
    from channels.layers import get_channel_layer

    from messaging.presence import get_presence

    device = pair[0]
    ws = await connected(device)
    await queue_empty(ws)
    (channel,) = await get_presence().alookup([(device.account_id, device.device_id)])
    assert channel is not None
    await ws.disconnect()
    # What arrives for it later is dropped (tests/signalserver/test_channel_layer.py).
    assert channel in get_channel_layer().closed_channels
