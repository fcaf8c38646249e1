"""Sends batched across the sockets of a process (messaging.batches, messaging.services.send_messages):
each send of a batch is answered on its own, exactly as it would be alone, and one socket's bad
send does not disturb the others' good ones."""

import asyncio
import json

from asgiref.sync import sync_to_async
import pytest

from messaging import services
from messaging.batches import submit_send
from messaging.envelopes import UNIDENTIFIED_SENDER, parse_envelope
from messaging.models import QueuedMessage
from messaging.services import MismatchedDevices, OutgoingMessage, SendRequest, StaleDevices, send_messages
from signalserver.auth import AuthenticatedDevice
from signalserver.errors import NotFound, RateLimited, Unauthorized
from signalserver.wire import ServiceId
from tests.factories import AccountFactory, DeviceFactory, override_limit
from tests.messaging.helpers import message_list, next_message, parse_frame, request_frame, response_frame
from tests.messaging.test_websocket import connected, queue_empty

pytestmark = pytest.mark.django_db(transaction=True)


def principal(device):
    return AuthenticatedDevice(account=device.account, device=device)


def to(account, *devices, content=b"hi", type=1, **fields) -> SendRequest:
    """A send to `devices` of `account` ((device id, registration id); default: all its devices)."""
    addressed = devices or [(d.device_id, d.registration_id) for d in account.devices.order_by("device_id")]
    messages = [OutgoingMessage(device_id, registration_id, type, content) for device_id, registration_id in addressed]
    return SendRequest(destination=ServiceId(account.aci), messages=messages, **fields)


def queued_contents(account) -> list[bytes]:
    rows = QueuedMessage.objects.filter(device__account=account).order_by("id")
    return [parse_envelope(row.open()[0]).content for row in rows]


def test_each_send_of_a_batch_gets_its_own_outcome_and_only_good_ones_are_queued():
    alice = DeviceFactory()
    DeviceFactory(account=alice.account, device_id=2)  # alice has another device: needsSync
    bob, carol = DeviceFactory(), DeviceFactory()
    stranger = AccountFactory.build()  # never saved: unknown destination
    sender = principal(alice)
    key = bytes(carol.account.unidentified_access_key)

    outcomes = send_messages(
        [
            to(bob.account, content=b"one", sender=sender),
            to(bob.account, (1, bob.registration_id), (2, 7), sender=sender),  # bob has no device 2
            to(bob.account, (1, bob.registration_id + 1), sender=sender),  # re-registered: stale
            to(stranger, (1, 1), sender=sender),
            to(carol.account, content=b"sealed", type=UNIDENTIFIED_SENDER, access_key=key, sender=None),
            to(carol.account, type=UNIDENTIFIED_SENDER, access_key=bytes(16), sender=None),  # wrong key
            to(carol.account, content=b"two", sender=sender),
            to(stranger, (1, 1), story=True, sender=None),  # a story never reveals the destination
        ]
    )

    assert outcomes[0] is True and outcomes[6] is True
    assert isinstance(outcomes[1], MismatchedDevices) and outcomes[1].body() == {"missingDevices": [], "extraDevices": [2]}
    assert isinstance(outcomes[2], StaleDevices) and outcomes[2].body() == {"staleDevices": [1]}
    assert isinstance(outcomes[3], NotFound)
    assert outcomes[4] is False  # sealed sender: no needsSync
    assert isinstance(outcomes[5], Unauthorized)
    assert outcomes[7] is False
    assert queued_contents(bob.account) == [b"one"]
    assert queued_contents(carol.account) == [b"sealed", b"two"]


def test_sends_of_one_batch_share_the_pairs_rate_limit_in_order():
    override_limit("messages", 2, 3600)
    alice, bob = DeviceFactory(), DeviceFactory()
    outcomes = send_messages([to(bob.account, content=bytes([n]), sender=principal(alice)) for n in range(3)])
    assert outcomes[:2] == [False, False]
    assert isinstance(outcomes[2], RateLimited) and outcomes[2].limiter == "messages"
    assert queued_contents(bob.account) == [b"\x00", b"\x01"]


def test_a_device_removed_between_the_read_and_the_insert_fails_only_its_send(monkeypatch):
    """The batch's INSERT fails on the vanished device; every send is then queued on its own after
    a fresh read, and only the send that addressed the removed device answers 409."""
    alice, bob, carol = DeviceFactory(), DeviceFactory(), DeviceFactory()
    second = DeviceFactory(account=bob.account, device_id=2)
    real_load = services._load_accounts
    reads = []

    def load_then_remove(*args):
        found = real_load(*args)
        reads.append(args)
        if len(reads) == 1:
            second.delete()  # another request removes bob's device 2 right after our read
        return found

    monkeypatch.setattr(services, "_load_accounts", load_then_remove)
    sender = principal(alice)
    outcomes = send_messages([to(carol.account, content=b"first", sender=sender), to(bob.account, sender=sender), to(carol.account, content=b"last", sender=sender)])

    assert outcomes[0] is False and outcomes[2] is False
    assert isinstance(outcomes[1], MismatchedDevices) and outcomes[1].body() == {"missingDevices": [], "extraDevices": [2]}
    assert queued_contents(carol.account) == [b"first", b"last"]
    assert queued_contents(bob.account) == []
    assert len(reads) == 4  # the batch's read, then one per send


async def test_sends_submitted_together_run_as_one_batch(monkeypatch):
    alice, bob = await sync_to_async(lambda: (DeviceFactory(), DeviceFactory()))()
    batches = []
    real_send_messages = services.send_messages

    def recording(requests):
        batches.append(len(requests))
        return real_send_messages(requests)

    # The batcher is keyed by its handler: patch before this loop's first submission.
    monkeypatch.setattr("messaging.batches.send_messages", recording)
    addressed = (1, bob.registration_id)
    requests = [to(bob.account, addressed, content=bytes([n]), sender=principal(alice)) for n in range(5)]
    requests[3] = to(bob.account, (9, 1), sender=principal(alice))
    outcomes = await asyncio.gather(*(submit_send(request) for request in requests), return_exceptions=True)

    assert batches == [5]
    assert [outcome for n, outcome in enumerate(outcomes) if n != 3] == [False] * 4
    assert isinstance(outcomes[3], MismatchedDevices)
    assert await sync_to_async(queued_contents)(bob.account) == [b"\x00", b"\x01", b"\x02", b"\x04"]


async def test_sockets_sending_at_once_each_get_their_own_answer_and_the_recipient_gets_the_good_ones():
    senders, bob = await sync_to_async(lambda: ([DeviceFactory() for _ in range(4)], DeviceFactory()))()
    bob_ws = await connected(bob)
    await queue_empty(bob_ws)
    sockets = [await connected(sender) for sender in senders]
    try:
        for ws in sockets:
            await queue_empty(ws)
        # Every socket sends before any answer is read; the third addresses a device bob lacks.
        for n, ws in enumerate(sockets):
            body = message_list([(5 if n == 2 else 1, bob.registration_id)], content=bytes([n]))
            frame = request_frame("PUT", f"/v1/messages/{bob.account_id}", body=json.dumps(body).encode(), request_id=n + 1)
            await ws.send_to(bytes_data=frame)
        answers = [parse_frame(await ws.receive_from(timeout=5)).response for ws in sockets]
        assert [(answer.id, answer.status) for answer in answers] == [(1, 200), (2, 200), (3, 409), (4, 200)]
        assert json.loads(answers[2].body) == {"missingDevices": [1], "extraDevices": [5]}

        contents = []
        for _ in range(3):
            request_id, envelope = await next_message(bob_ws, timeout=5)
            contents.append(envelope.content)
            await bob_ws.send_to(bytes_data=response_frame(request_id))
        assert sorted(contents) == [b"\x00", b"\x01", b"\x03"]
    finally:
        for ws in [bob_ws, *sockets]:
            await ws.disconnect()
