"""The sends and acknowledgements of a process's sockets, batched per event loop
(`signalserver.batching`): a batch of sends is one read of the destinations, one rate-limit call and
one INSERT (`send_messages`); a batch of acknowledgements one DELETE and one INSERT of receipts
(`acknowledge_rows`).

An acknowledgement whose batch fails stays queued and is delivered again on the device's next
connection (at-least-once, DESIGN.md §4).
"""

from __future__ import annotations

import asyncio
import logging

from messaging.services import SendRequest, acknowledge_rows, send_messages
from signalserver.batching import loop_batcher

logger = logging.getLogger(__name__)

MAX_SENDS_PER_BATCH = 256
MAX_ACKS_PER_BATCH = 1024


def submit_send(request: SendRequest) -> asyncio.Future:
    """Queue one send; the future resolves to its `needsSync` or raises the error it answers with."""
    return loop_batcher(send_messages, MAX_SENDS_PER_BATCH).submit(request)


def submit_ack(device, row_id: int) -> asyncio.Future:
    """Queue one acknowledged row of `device`; the future resolves once its batch ran (the row is
    deleted, or the batch failed and it stays)."""
    return loop_batcher(_acknowledge, MAX_ACKS_PER_BATCH).submit((device.pk, device.device_id, row_id))


def _acknowledge(acks: list[tuple[int, int, int]]) -> list[None]:
    by_device: dict[tuple[int, int], list[int]] = {}
    for device_pk, device_id, row_id in acks:
        by_device.setdefault((device_pk, device_id), []).append(row_id)
    try:
        acknowledge_rows(by_device)
    except Exception:
        logger.exception("deleting acknowledged messages failed; they are delivered again later")
    return [None] * len(acks)
