"""Scale-out: three real server processes (daphne, tests/servers.py) on different loopback ports,
sharing nothing but the test PostgreSQL database and Redis, behave as one server.

Each node keeps its sockets in its own process. What lets a send on one node reach a socket on
another is the shared state only: the presence registry in Redis (which channel holds a device's
delivery socket) and the Redis channel layer (how a node hands rows to another node's consumer).
These tests hold the sender and the receiver on different nodes, so each fails when that state is
process-local (an in-memory channel layer or presence table, as on the embedded defaults): the
message never reaches the other node's socket, or the older socket is never displaced.

- A REST send through node A reaches the recipient's socket on node C within DELIVERY_DEADLINE,
  and the delivery receipt of C's acknowledgement reaches the sender's socket on node B.
- A device connecting on node B displaces its older socket on node A (closed with 4409); the next
  message, sent through node C, arrives on the new socket only.
- A send tunnelled over a socket on node B (identified `PUT /v1/messages/...` request frame)
  reaches the recipient's socket on node A.

Every wait is bounded (ChatSocket timeouts); only 127.0.0.1 is used.
"""

import time

import pytest

from messaging.envelopes import SERVER_DELIVERY_RECEIPT, parse_envelope
from messaging.presence import get_presence
from tests.factories import device_auth
from tests.live_clients import MESSAGE_PATH, ChatSocket
from tests.messaging.test_end_to_end import (  # noqa: F401 (pair is a fixture)
    DELIVERY_DEADLINE,
    guid_of,
    pair,
    queued_guids,
    send_over_http,
    send_over_socket,
)
from tests.servers import server_processes  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 5.0  # seconds any single frame or close may take before the test fails


def delivery_channel(device) -> str | None:
    """The channel the shared presence registry names for the device's delivery socket."""
    [channel] = get_presence().lookup([(device.account_id, device.device_id)])
    return channel


async def test_a_message_sent_through_one_node_reaches_a_socket_on_another(pair, server_processes):  # noqa: F811
    alice, bob = pair
    a, b, c = server_processes(3)
    async with await ChatSocket.connect(c.ws_url, device_auth(bob)) as bob_on_c:
        async with await ChatSocket.connect(b.ws_url, device_auth(alice)) as alice_on_b:
            assert await bob_on_c.backlog(WAIT) == [] and await alice_on_b.backlog(WAIT) == []
            assert delivery_channel(bob) is not None  # node C registered the socket where A can see it

            started = time.monotonic()
            await send_over_http(a.url, device_auth(alice), bob.account_id, bob.registration_id, b"A to C", 11)
            delivery = await bob_on_c.next_request(WAIT)
            latency = bob_on_c.arrived_at[delivery.id] - started
            assert (delivery.verb, delivery.path) == ("PUT", MESSAGE_PATH)
            envelope = parse_envelope(delivery.body)
            assert (envelope.content, envelope.client_timestamp) == (b"A to C", 11)
            assert envelope.source_service_id_text == str(alice.account_id) and envelope.source_device == 1
            assert latency < DELIVERY_DEADLINE, f"cross-node delivery took {latency:.3f} s"
            assert await queued_guids(bob.account_id) == {guid_of(delivery)}  # durable until acknowledged

            # C deletes the row on the ack and queues the receipt; Alice's socket on B gets it.
            await bob_on_c.ack(delivery)
            receipt_request = await alice_on_b.next_request(WAIT)
            receipt = parse_envelope(receipt_request.body)
            assert (receipt.type, receipt.client_timestamp) == (SERVER_DELIVERY_RECEIPT, 11)
            assert receipt.source_service_id_text == str(bob.account_id)
            await alice_on_b.ack(receipt_request)
            assert await queued_guids(bob.account_id) == set()
            await bob_on_c.expect_no_request(0.3)  # delivered once, on one node
    print(f"A → C delivery latency: {latency * 1000:.1f} ms")


async def test_a_socket_on_another_node_displaces_the_older_one_with_4409(pair, server_processes):  # noqa: F811
    alice, bob = pair
    a, b, c = server_processes(3)
    async with await ChatSocket.connect(a.ws_url, device_auth(bob)) as old_on_a:
        assert await old_on_a.backlog(WAIT) == []
        old_channel = delivery_channel(bob)
        assert old_channel is not None

        async with await ChatSocket.connect(b.ws_url, device_auth(bob)) as new_on_b:
            assert await new_on_b.backlog(WAIT) == []  # queue/empty comes after B claimed the device
            assert await old_on_a.wait_closed(WAIT) == 4409
            # Closing the displaced socket on A did not release the newer claim.
            assert delivery_channel(bob) not in (None, old_channel)

            started = time.monotonic()
            await send_over_http(c.url, device_auth(alice), bob.account_id, bob.registration_id, b"to B", 22)
            delivery = await new_on_b.next_request(WAIT)
            latency = new_on_b.arrived_at[delivery.id] - started
            assert parse_envelope(delivery.body).content == b"to B"
            assert latency < DELIVERY_DEADLINE, f"delivery after displacement took {latency:.3f} s"
            await new_on_b.ack(delivery)
            assert old_on_a.requests.empty()  # nothing reached the displaced socket before it closed

            # A keepalive finds B's socket still registered (else B would close it as a zombie).
            assert (await new_on_b.request("GET", "/v1/keepalive", timeout=WAIT)).status == 200
            await new_on_b.expect_no_request(0.3)  # raises SocketClosed if B closed it
            assert new_on_b.close_code is None


async def test_a_send_tunnelled_over_a_socket_on_one_node_reaches_another_node(pair, server_processes):  # noqa: F811
    alice, bob = pair
    a, b = server_processes(2)
    async with await ChatSocket.connect(a.ws_url, device_auth(bob)) as bob_on_a:
        async with await ChatSocket.connect(b.ws_url, device_auth(alice)) as alice_on_b:
            assert await bob_on_a.backlog(WAIT) == [] and await alice_on_b.backlog(WAIT) == []

            started = time.monotonic()
            await send_over_socket(alice_on_b, bob.account_id, bob.registration_id, b"over B's socket", 33, timeout=WAIT)

            delivery = await bob_on_a.next_request(WAIT)
            latency = bob_on_a.arrived_at[delivery.id] - started
            envelope = parse_envelope(delivery.body)
            assert (envelope.content, envelope.client_timestamp) == (b"over B's socket", 33)
            assert envelope.source_service_id_text == str(alice.account_id)
            assert latency < DELIVERY_DEADLINE, f"tunnelled cross-node delivery took {latency:.3f} s"

            await bob_on_a.ack(delivery)
            receipt = parse_envelope((await alice_on_b.next_request(WAIT)).body)
            assert (receipt.type, receipt.client_timestamp) == (SERVER_DELIVERY_RECEIPT, 33)
