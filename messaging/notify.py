"""After commit: hand new envelopes to the devices' live sockets, or ask for pushes (docs/architecture.md §4.3).

Sends run in sync threads; the channel layer and Redis presence are asyncio. Waiting for them from
the sending thread (async_to_sync) costs a thread hop per send and holds the thread — under ASGI
the one thread every sync view and database call of the process shares. So a committed batch is
queued onto the server's event loop and the thread moves on. One drain task per loop works through
the queue in order, so deliveries to a device keep their commit order, and it batches whatever
accumulated meanwhile into one presence lookup. The rows are durable already: a notification
lost with a dying process only delays delivery until the device's next connection or push.

Outside a server (tests, Celery workers, management commands) there is no event loop to hand over
to, and the notification runs to completion before the call returns.

Presence (Redis) always says which channel holds a device's delivery socket. When that socket lives
in this process, on this event loop, its rows are handed to it directly (`local_sockets`); only
sockets on other nodes or workers cost a trip through the channel layer.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable

from asgiref.sync import SyncToAsync, async_to_sync
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer

from accounts.services import device_group
from messaging.presence import get_presence
from push.services import request_pushes
from signalserver import request_ids
from signalserver.db import in_db_thread
from signalserver.errors import log_unavailable, unavailable_dependency

logger = logging.getLogger(__name__)

_pending: dict[asyncio.AbstractEventLoop, list] = {}

# channel name → (its event loop, the consumer's `queue_messages`), for this process's delivery sockets.
local_sockets: dict[str, tuple[asyncio.AbstractEventLoop, Callable[[dict], Awaitable[None]]]] = {}


def notify_committed(deliveries: list) -> None:
    """Hand committed deliveries (messaging.services.Delivery) to sockets or pushes."""
    loop = _server_loop()
    if loop is None:
        async_to_sync(_notify)(deliveries)
    else:
        loop.call_soon_threadsafe(_enqueue, loop, deliveries)


def _server_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop of the server thread that handed this thread its work, if any."""
    if getattr(SyncToAsync.threadlocal, "main_event_loop_pid", None) != os.getpid():
        return None
    loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    return loop if loop is not None and loop.is_running() else None


def _enqueue(loop: asyncio.AbstractEventLoop, deliveries: list) -> None:
    batches = _pending.get(loop)
    if batches is None:
        batches = _pending[loop] = []
        loop.create_task(_drain(loop))
    batches.append(deliveries)


async def _drain(loop: asyncio.AbstractEventLoop) -> None:
    request_ids.detach()  # it serves the sends of many requests: no one request's id
    try:
        while batches := _pending.get(loop):
            _pending[loop] = []
            try:
                await _notify([delivery for batch in batches for delivery in batch])
            except Exception as error:
                # The rows are queued either way. After a Redis outage every socket reads its
                # queue again (`ChatConsumer.resubscribe`); others get them on their next connection.
                dependency = unavailable_dependency(error)
                if dependency is None:
                    logger.exception("notifying sockets failed; the devices get the messages on their next connection")
                else:
                    log_unavailable(dependency)
    finally:
        _pending.pop(loop, None)


async def _hand_to_local_socket(queue_messages: Callable[[dict], Awaitable[None]], queued: list) -> bool:
    """Give the rows to a delivery socket of this event loop, directly: its consumer only files
    them and wakes its delivery loop. False when that fails (the device is then pushed)."""
    rows = [[delivery.row_id, delivery.envelope, delivery.story, delivery.ephemeral, delivery.server_timestamp] for delivery in queued]
    try:
        await queue_messages({"type": "queue.messages", "messages": rows})
    except Exception:  # e.g. a socket closing under an ephemeral send: the others go on
        logger.exception("handing rows to a socket of this process failed; the device is pushed instead")
        return False
    return True


def _sealed_rows(queued: list) -> dict:
    """The channel-layer event for rows going to another process: through Redis the envelopes
    travel sealed, as their rows hold them (messaging/sealing.py)."""
    rows = [[delivery.row_id, *delivery.seal(), delivery.ephemeral, delivery.server_timestamp] for delivery in queued]
    return {"type": "queue.sealed", "messages": rows}


async def _hand_to_sockets(layer, elsewhere: list, by_device: dict) -> set:
    """Give the rows of each (device, channel) to its socket in another process (or on another
    event loop) through the channel layer: one layer message per destination process
    (`send_many`) where the layer bundles. Returns the devices handed over; a device whose
    process's channel is full (a process that stopped reading, or a node that died) is not: it is
    then treated as absent and pushed. The rows stay queued either way."""
    if hasattr(layer, "send_many"):
        full = set(await layer.send_many([(channel, _sealed_rows(by_device[device])) for device, channel in elsewhere]))
        if full:
            logger.warning("a delivery socket's channel is full; the device is pushed instead")
        return {device for device, channel in elsewhere if channel not in full}
    handed = set()
    for device, channel in elsewhere:  # the in-memory layer (one process): rarely anything here
        try:
            await layer.send(channel, _sealed_rows(by_device[device]))
        except ChannelFull:
            logger.warning("a delivery socket's channel is full; the device is pushed instead")
            continue
        handed.add(device)
    return handed


async def _notify(deliveries: list) -> None:
    by_device: dict[tuple, list] = {}
    for delivery in deliveries:
        by_device.setdefault((delivery.aci, delivery.device_id), []).append(delivery)
    devices = list(by_device)
    channels = await get_presence().alookup(devices)
    layer = get_channel_layer()
    # This loop's own sockets get their rows directly, in turn; the others through the channel
    # layer, one message per destination process.
    loop = asyncio.get_running_loop()
    handed, elsewhere = set(), []
    for device, channel in zip(devices, channels, strict=True):
        if channel is None:
            continue
        local = local_sockets.get(channel)
        if local is None or local[0] is not loop:
            elsewhere.append((device, channel))
        elif await _hand_to_local_socket(local[1], by_device[device]):
            handed.add(device)
    if elsewhere:
        handed |= await _hand_to_sockets(layer, elsewhere, by_device)
    absent = []
    for (aci, device_id) in devices:
        if (aci, device_id) in handed:
            continue
        durable = [delivery for delivery in by_device[(aci, device_id)] if not delivery.ephemeral]
        if durable:  # ephemeral messages for absent devices are dropped, never pushed
            absent.append(durable)
            # Long pollers (GET /v1/messages?wait=N) wait on the device group.
            await layer.group_send(device_group(aci, device_id), {"type": "queue.available"})
    if absent:
        # On a database thread: with eager tasks (tests, the embedded run) the push is sent here.
        await in_db_thread(request_pushes)(
            devices=[(durable[0].device_pk, any(delivery.urgent for delivery in durable)) for durable in absent]
        )
