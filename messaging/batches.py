"""The sends and acknowledgements of a process's sockets, batched per event loop
(`signalserver.batching`): a batch of sends is one read of the destinations, one rate-limit call and
one INSERT (`send_messages`); a batch of acknowledgements one DELETE and one INSERT of receipts
(`acknowledge_rows`).

An acknowledgement whose batch fails (PostgreSQL down or restarting) is tried again a few times
with a growing delay; if it still fails its row stays queued and is delivered again on the device's
next connection (at-least-once).
"""

from __future__ import annotations

import asyncio
import logging

from asgiref.sync import SyncToAsync

from messaging.services import Acknowledgement, SendRequest, acknowledge_rows, send_messages
from signalserver.batching import loop_batcher
from signalserver.errors import log_unavailable, unavailable_dependency

logger = logging.getLogger(__name__)

MAX_SENDS_PER_BATCH = 256
MAX_ACKS_PER_BATCH = 1024
# Seconds before each new try of a failed acknowledgement (about 16 s in all, plus each try's wait
# for a connection): an outage shorter than that redelivers nothing.
ACK_RETRY_DELAYS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def submit_send(request: SendRequest) -> asyncio.Future:
    """Queue one send; the future resolves to its `needsSync` or raises the error it answers with."""
    return loop_batcher(send_messages, MAX_SENDS_PER_BATCH).submit(request)


def submit_ack(device, ack: Acknowledgement) -> asyncio.Future:
    """Queue one acknowledged row of `device`; the future resolves once its batch ran: True when
    the row is deleted, False when the batch failed (it is then tried again, ACK_RETRY_DELAYS)."""
    return loop_batcher(_acknowledge, MAX_ACKS_PER_BATCH).submit((device.pk, device.device_id, ack, 0))


def _acknowledge(acks: list[tuple[int, int, Acknowledgement, int]]) -> list[bool]:
    """(device pk, device id, acknowledgement, tries so far) → deleted or not, on a database thread."""
    by_device: dict[tuple[int, int], list[Acknowledgement]] = {}
    for device_pk, device_id, ack, _ in acks:
        by_device.setdefault((device_pk, device_id), []).append(ack)
    try:
        acknowledge_rows(by_device)
    except Exception as error:
        dependency = unavailable_dependency(error)
        if dependency is None:
            logger.exception("deleting acknowledged messages failed; they are tried again")
        else:
            log_unavailable(dependency)
        # Back to the event loop whose batcher handed us the batch (asgiref records it for the
        # thread, as for `messaging.notify`), to be tried again there after a delay.
        SyncToAsync.threadlocal.main_event_loop.call_soon_threadsafe(_retry_later, acks)
        return [False] * len(acks)
    return [True] * len(acks)


def _retry_later(acks: list[tuple[int, int, Acknowledgement, int]]) -> None:
    """On the event loop: each failed acknowledgement again after its next delay, if it has one
    left. Those of one failed batch are due together, and make one batch again."""
    due: dict[float, list[tuple[int, int, Acknowledgement, int]]] = {}
    for device_pk, device_id, ack, tries in acks:
        if tries < len(ACK_RETRY_DELAYS):
            due.setdefault(ACK_RETRY_DELAYS[tries], []).append((device_pk, device_id, ack, tries + 1))
    loop = asyncio.get_running_loop()
    for delay, again in due.items():
        loop.call_later(delay, _submit_again, again)


def _submit_again(acks: list[tuple[int, int, Acknowledgement, int]]) -> None:
    batcher = loop_batcher(_acknowledge, MAX_ACKS_PER_BATCH)
    for ack in acks:
        batcher.submit(ack)
