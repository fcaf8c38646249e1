"""Acknowledgements from every delivery socket of an event loop, deleted together.

A socket's 2xx acknowledgement deletes its row and queues the sender's delivery receipt. Done one
socket at a time, that is a thread hand-off and a transaction per acknowledgement; here the acks of
all sockets of the loop join one batch: one DELETE and one INSERT of receipts (`acknowledge_rows`).
A batch is whatever arrived while the previous one was being deleted, so there is no timer: no
delay when the server is quiet, larger batches when it is busy.

An acknowledgement whose batch fails stays queued and is delivered again on the device's next
connection (at-least-once, DESIGN.md §4).
"""

from __future__ import annotations

import asyncio
import logging
from weakref import WeakKeyDictionary

from messaging.services import acknowledge_rows
from signalserver.db import in_db_thread

logger = logging.getLogger(__name__)


class AckBatcher:
    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._waiting: dict[tuple[int, int], list[int]] = {}  # (device pk, device id) → row ids
        self._done: asyncio.Future | None = None  # resolves once the waiting batch is deleted
        self._task: asyncio.Task | None = None

    def add(self, device, row_id: int) -> asyncio.Future:
        """Queue one acknowledged row of `device`; the future resolves once it is deleted (or its
        batch failed)."""
        self._waiting.setdefault((device.pk, device.device_id), []).append(row_id)
        if self._done is None:
            self._done = self._loop.create_future()
        if self._task is None or self._task.done():
            self._task = self._loop.create_task(self._run())
        return self._done

    async def _run(self) -> None:
        while self._waiting:
            batch, done = self._waiting, self._done
            self._waiting, self._done = {}, None
            try:
                await in_db_thread(acknowledge_rows)(batch)
            except Exception:
                logger.exception("deleting acknowledged messages failed; they are delivered again later")
            finally:
                done.set_result(None)


_batchers: WeakKeyDictionary[asyncio.AbstractEventLoop, AckBatcher] = WeakKeyDictionary()


def ack_batcher() -> AckBatcher:
    """The batcher of the running event loop."""
    loop = asyncio.get_running_loop()
    batcher = _batchers.get(loop)
    if batcher is None:
        batcher = _batchers[loop] = AckBatcher(loop)
    return batcher
