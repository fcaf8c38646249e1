"""The channel layer between processes (signalserver.redis_clients.ChannelLayer), on the real Redis:
a send is one script; `send_many` hands messages for many sockets to their processes as one
layer message per process, which the receiving process splits into its sockets' channels in order.

Two layer instances stand for two processes: each has a process prefix of its own, as each web
process has."""

from __future__ import annotations

import asyncio

import pytest
from channels.exceptions import ChannelFull
from django.conf import settings

from signalserver.redis_clients import ChannelLayer


def layer(**config) -> ChannelLayer:
    return ChannelLayer(**{**settings.CHANNEL_LAYERS["default"]["CONFIG"], "prefix": "test-layer", **config})


@pytest.fixture
async def processes():
    sender, receiver = layer(), layer()
    yield sender, receiver
    await receiver.flush()
    for each in (sender, receiver):
        await each.close_pools()


async def queued(receiver: ChannelLayer, channel: str) -> int:
    """Layer messages waiting in Redis for the process that owns `channel`."""
    key = receiver.prefix + receiver.non_local_name(channel)
    return await receiver.connection(0).zcard(key)


async def test_messages_for_many_sockets_of_a_process_travel_as_one_and_arrive_in_order(processes):
    sender, receiver = processes
    first, second = await receiver.new_channel(), await receiver.new_channel()
    full = await sender.send_many(
        [
            (first, {"type": "queue.sealed", "n": 1}),
            (second, {"type": "queue.sealed", "n": 2}),
            (first, {"type": "queue.sealed", "n": 3}),
        ]
    )
    assert full == []
    assert await queued(receiver, first) == 1  # one layer message for the three
    received_first = [await asyncio.wait_for(receiver.receive(first), 5) for _ in range(2)]
    assert [message["n"] for message in received_first] == [1, 3]
    assert (await asyncio.wait_for(receiver.receive(second), 5))["n"] == 2
    assert await queued(receiver, first) == 0


async def test_each_destination_process_gets_its_own_message(processes):
    sender, receiver = processes
    other = layer()
    try:
        here, there = await receiver.new_channel(), await other.new_channel()
        assert await sender.send_many([(here, {"type": "a"}), (there, {"type": "b"})]) == []
        assert (await queued(receiver, here), await queued(other, there)) == (1, 1)
        assert (await asyncio.wait_for(other.receive(there), 5))["type"] == "b"
        assert (await asyncio.wait_for(receiver.receive(here), 5))["type"] == "a"
    finally:
        await other.flush()
        await other.close_pools()


async def test_a_full_process_queue_refuses_and_names_the_channels_not_sent_to(processes):
    sender, receiver = layer(capacity=2), layer(capacity=2)
    try:
        stuck, other = await receiver.new_channel(), await receiver.new_channel()
        await sender.send(stuck, {"type": "x"})
        await sender.send(stuck, {"type": "x"})
        with pytest.raises(ChannelFull):
            await sender.send(stuck, {"type": "x"})
        assert sorted(await sender.send_many([(stuck, {"type": "y"}), (other, {"type": "y"})])) == sorted([stuck, other])
        assert await queued(receiver, stuck) == 2  # nothing more was added
    finally:
        await receiver.flush()
        for each in (sender, receiver):
            await each.close_pools()


async def test_a_plain_send_still_reaches_its_channel_and_expires(processes):
    sender, receiver = processes
    channel = await receiver.new_channel()
    await sender.send(channel, {"type": "queue.available"})
    assert await asyncio.wait_for(receiver.receive(channel), 5) == {"type": "queue.available"}
    short = layer(expiry=1)
    try:
        await short.send(channel, {"type": "old"})
        await asyncio.sleep(2.1)
        await short.send(channel, {"type": "new"})  # drops what expired first
        assert await queued(receiver, channel) == 1
        assert (await asyncio.wait_for(receiver.receive(channel), 5))["type"] == "new"
    finally:
        await short.close_pools()


async def test_messages_for_a_forgotten_channel_leave_nothing_behind(processes):
    sender, receiver = processes
    gone, open_ = await receiver.new_channel(), await receiver.new_channel()
    receiver.forget(gone)  # its socket closed; a sender found it present just before
    await sender.send(gone, {"type": "late"})
    await sender.send_many([(gone, {"type": "late"}), (open_, {"type": "live", "n": 1})])
    await sender.send(open_, {"type": "live", "n": 2})
    received = [await asyncio.wait_for(receiver.receive(open_), 5) for _ in range(2)]
    assert [message["n"] for message in received] == [1, 2]
    assert gone not in receiver.receive_buffer  # no buffer that nobody would read
    assert await queued(receiver, open_) == 0


async def test_a_group_message_reaches_the_open_channels_of_a_process_not_the_forgotten(processes):
    sender, receiver = processes
    gone, open_ = await receiver.new_channel(), await receiver.new_channel()
    for channel in (gone, open_):
        await receiver.group_add("test-group", channel)
    receiver.forget(gone)
    await sender.group_send("test-group", {"type": "queue.available"})
    assert await asyncio.wait_for(receiver.receive(open_), 5) == {"type": "queue.available"}
    assert gone not in receiver.receive_buffer
    await receiver.group_discard("test-group", gone)
    await receiver.group_discard("test-group", open_)
