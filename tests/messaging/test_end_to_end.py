"""End to end (docs/architecture.md §9): the real ASGI server (daphne) in its own process on a free port, and
clients over real sockets (websockets, httpx). Each test starts its own server(s); the latency
figures are printed (`pytest -rP` shows them)."""

import base64
import json
import time
import uuid

import httpx
import pytest
import websockets
from channels.db import database_sync_to_async

from messaging.envelopes import SERVER_DELIVERY_RECEIPT, parse_envelope
from messaging.models import QueuedMessage
from tests.factories import DEFAULT_PASSWORD, DeviceFactory, basic_auth, device_auth
from tests.live_clients import MESSAGE_PATH, ChatSocket, register_account
from tests.messaging.helpers import message_list
from tests.servers import live_server_process

pytestmark = pytest.mark.django_db(transaction=True)

DELIVERY_DEADLINE = 1.0  # seconds from the send to the frame on the receiver's socket


@pytest.fixture
def pair(transactional_db):
    """Alice and Bob, one primary device each, as rows (credentials: DeviceFactory's password)."""
    return DeviceFactory.create_batch(2)


async def send_over_http(url, authorization, destination, registration_id, content: bytes, timestamp: int):
    body = message_list([(1, registration_id)], content=content, timestamp=timestamp)
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        response = await http.put(f"/v1/messages/{destination}", json=body, headers={"Authorization": authorization})
    assert response.status_code == 200, response.text
    assert response.json() == {"needsSync": False}


async def send_over_socket(ws, destination, registration_id, content: bytes, timestamp: int, *, timeout: float):
    """The same send tunnelled over an authenticated ChatSocket (`PUT /v1/messages/...` frame)."""
    body = message_list([(1, registration_id)], content=content, timestamp=timestamp)
    response = await ws.request(
        "PUT", f"/v1/messages/{destination}", json.dumps(body).encode(), ["Content-Type:application/json"], timeout=timeout
    )
    assert (response.status, json.loads(response.body)) == (200, {"needsSync": False})


@database_sync_to_async
def queued_guids(account_id) -> set[uuid.UUID]:
    rows = QueuedMessage.objects.filter(device__account_id=account_id)
    return {uuid.UUID(bytes=parse_envelope(row.open()[0]).server_guid) for row in rows}


def guid_of(request) -> uuid.UUID:
    return uuid.UUID(bytes=parse_envelope(request.body).server_guid)


async def test_a_message_arrives_within_a_second_is_acknowledged_receipted_and_never_redelivered():
    with live_server_process() as server:
        alice, bob = await register_account(server.url), await register_account(server.url)
        async with await ChatSocket.connect(server.ws_url, alice.authorization) as alice_ws:
            async with await ChatSocket.connect(server.ws_url, bob.authorization) as bob_ws:
                assert await alice_ws.backlog() == [] and await bob_ws.backlog() == []
                latencies = {"rest": [], "socket": []}

                for index, path in enumerate(["rest", "socket"] * 3):
                    content, timestamp = f"{path} message {index}".encode(), 1_700_000_000_000 + index
                    started = time.monotonic()
                    if path == "rest":
                        await send_over_http(
                            server.url, alice.authorization, bob.aci, bob.registration_id, content, timestamp
                        )
                    else:
                        body = message_list([(1, bob.registration_id)], content=content, timestamp=timestamp)
                        headers = ["Content-Type:application/json"]
                        response = await alice_ws.request(
                            "PUT", f"/v1/messages/{bob.aci}", json.dumps(body).encode(), headers
                        )
                        assert (response.status, json.loads(response.body)) == (200, {"needsSync": False})

                    delivery = await bob_ws.next_request()
                    latency = bob_ws.arrived_at[delivery.id] - started
                    latencies[path].append(latency)
                    assert (delivery.verb, delivery.path) == ("PUT", MESSAGE_PATH)
                    assert any(header.lower().startswith("x-signal-timestamp:") for header in delivery.headers)
                    envelope = parse_envelope(delivery.body)
                    assert (envelope.content, envelope.client_timestamp) == (content, timestamp)
                    assert envelope.source_service_id_text == alice.aci and envelope.source_device == 1
                    assert latency < DELIVERY_DEADLINE, f"{path} delivery took {latency:.3f} s"
                    assert await queued_guids(bob.aci) == {guid_of(delivery)}  # stored until acknowledged
                    if index == 0:
                        await alice_ws.expect_no_request(0.3)  # no receipt before the ack

                    await bob_ws.ack(delivery)
                    # The receipt is queued in the transaction that deletes the acknowledged row.
                    receipt_request = await alice_ws.next_request()
                    receipt = parse_envelope(receipt_request.body)
                    assert receipt.type == SERVER_DELIVERY_RECEIPT
                    assert receipt.source_service_id_text == bob.aci and receipt.source_device == 1
                    assert receipt.destination_service_id_text == alice.aci
                    assert receipt.client_timestamp == timestamp and not receipt.HasField("content")
                    await alice_ws.ack(receipt_request)
                    assert await queued_guids(bob.aci) == set()

            # Bob comes back: only queue/empty, and nothing after it.
            async with await ChatSocket.connect(server.ws_url, bob.authorization) as bob_again:
                assert await bob_again.backlog() == []
                await bob_again.expect_no_request(0.3)
    print(
        "send → deliver latency (ms): "
        + ", ".join(f"{path} {[round(s * 1000, 1) for s in values]}" for path, values in latencies.items())
    )


async def test_unacknowledged_messages_are_delivered_again_after_reconnecting_in_order(pair):
    alice, bob = pair
    with live_server_process() as server:
        async with await ChatSocket.connect(server.ws_url, device_auth(bob)) as bob_ws:
            assert await bob_ws.backlog() == []
            for content in (b"refused", b"ignored"):
                await send_over_http(server.url, device_auth(alice), bob.account_id, bob.registration_id, content, 1)
            refused, ignored = await bob_ws.next_request(), await bob_ws.next_request()
            await bob_ws.ack(refused, status=500)  # a non-2xx keeps it for the next connection
            await bob_ws.expect_no_request(0.5)  # ...but not for this one

        async with await ChatSocket.connect(server.ws_url, device_auth(bob)) as bob_again:
            redelivered = await bob_again.backlog()
            assert [guid_of(r) for r in redelivered] == [guid_of(refused), guid_of(ignored)]
            assert [parse_envelope(r.body).content for r in redelivered] == [b"refused", b"ignored"]
    assert await queued_guids(bob.account_id) == {guid_of(refused), guid_of(ignored)}


@pytest.mark.parametrize("receiver", ["connected, not acknowledging", "offline"])
async def test_killing_the_server_between_send_and_ack_loses_nothing(pair, receiver):
    alice, bob = pair
    with live_server_process() as server:
        bob_ws = None
        if receiver != "offline":
            bob_ws = await ChatSocket.connect(server.ws_url, device_auth(bob))
            assert await bob_ws.backlog() == []
        await send_over_http(server.url, device_auth(alice), bob.account_id, bob.registration_id, b"crash", 7)
        if bob_ws is not None:
            delivered = await bob_ws.next_request()  # on the socket, not acknowledged
            assert parse_envelope(delivered.body).content == b"crash"
        server.kill()
        if bob_ws is not None:
            assert await bob_ws.wait_closed() == 1006  # the connection dropped, no close frame
    [guid] = await queued_guids(bob.account_id)

    with live_server_process() as restarted:
        async with await ChatSocket.connect(restarted.ws_url, device_auth(bob)) as bob_again:
            [redelivered] = await bob_again.backlog()
            assert guid_of(redelivered) == guid
            assert parse_envelope(redelivered.body).content == b"crash"
            await bob_again.ack(redelivered)
        async with await ChatSocket.connect(restarted.ws_url, device_auth(alice)) as alice_ws:
            receipt = parse_envelope((await alice_ws.next_message()).body)  # backlog or live
            assert (receipt.type, receipt.client_timestamp) == (SERVER_DELIVERY_RECEIPT, 7)
    assert await queued_guids(bob.account_id) == set()


async def test_a_newer_socket_for_the_same_device_displaces_the_older_with_4409(pair):
    alice, bob = pair
    with live_server_process() as server:
        old = await ChatSocket.connect(server.ws_url, device_auth(bob))
        assert await old.backlog() == []
        async with await ChatSocket.connect(server.ws_url, device_auth(bob)) as new:
            assert await new.backlog() == []
            assert await old.wait_closed() == 4409

            await send_over_http(server.url, device_auth(alice), bob.account_id, bob.registration_id, b"to the new", 1)
            assert parse_envelope((await new.next_request()).body).content == b"to the new"
            assert (await new.request("GET", "/v1/keepalive")).status == 200


async def test_wrong_credentials_refuse_the_upgrade_with_403_and_none_give_an_anonymous_socket(pair):
    alice, bob = pair
    with live_server_process() as server:
        for authorization in (
            device_auth(alice, "definitely-not-the-password"),
            basic_auth(f"{uuid.uuid4()}.1", DEFAULT_PASSWORD),  # no such account
            "Basic " + base64.b64encode(b"garbage").decode(),
        ):
            with pytest.raises(websockets.InvalidStatus) as refused:
                await ChatSocket.connect(server.ws_url, authorization)
            assert refused.value.response.status_code == 403

        async with await ChatSocket.connect(server.ws_url) as anonymous:
            assert (await anonymous.request("GET", "/v1/keepalive")).status == 200
            assert (await anonymous.request("GET", "/v1/accounts/whoami")).status == 401
            await anonymous.expect_no_request(0.2)  # no queue on an anonymous socket

        # Very old clients put the credentials in the query string.
        query = f"?login={bob.account_id}.1&password={DEFAULT_PASSWORD}"
        async with await ChatSocket.connect(server.ws_url, query=query) as legacy:
            assert await legacy.backlog() == []
