"""Work from the sockets of one event loop, done together on a database thread (docs/architecture.md §4).

One socket's send or acknowledgement on its own costs a thread hand-off, and statements and round
trips to PostgreSQL and Redis of its own. Gathered across the sockets of the loop, a batch pays
for them once. A batch is whatever arrived while the previous one ran, so there is no timer: no
delay when the server is quiet, larger batches when it is busy. One batch of a kind runs at a
time, so a socket's items are handled in the order it submitted them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from weakref import WeakKeyDictionary

from signalserver import request_ids
from signalserver.db import in_db_thread
from signalserver.errors import DomainError


class LoopBatcher:
    """Runs `handle(items) -> outcomes` (one outcome per item, in order; an Exception outcome is
    raised to that item's caller) on a database thread for batches of at most `max_items`."""

    def __init__(self, handle: Callable[[list], list], loop: asyncio.AbstractEventLoop, max_items: int):
        self._handle = handle
        self._loop = loop
        self._max_items = max_items
        self._waiting: list[tuple[object, asyncio.Future]] = []
        self._task: asyncio.Task | None = None

    def submit(self, item) -> asyncio.Future:
        """Queue `item`; the future resolves to its outcome once its batch has run."""
        future = self._loop.create_future()
        self._waiting.append((item, future))
        if self._task is None or self._task.done():
            self._task = self._loop.create_task(self._run())
        return future

    async def _run(self) -> None:
        # A batch serves the requests of many sockets: its lines carry no request id (it would
        # otherwise inherit the id of whichever request started it).
        request_ids.detach()
        while self._waiting:
            batch, self._waiting = self._waiting[: self._max_items], self._waiting[self._max_items :]
            try:
                outcomes = await in_db_thread(self._handle)([item for item, _ in batch])
            except Exception as error:  # the whole batch failed (e.g. the database is down)
                outcomes = [error] * len(batch)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue  # its caller went away (a socket that closed)
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)


_batchers: WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Callable, LoopBatcher]] = WeakKeyDictionary()


def loop_batcher(handle: Callable[[list], list], max_items: int) -> LoopBatcher:
    """The batcher of `handle` on the running event loop."""
    loop = asyncio.get_running_loop()
    batchers = _batchers.get(loop)
    if batchers is None:  # (WeakKeyDictionary.setdefault would make a weak reference every call)
        batchers = _batchers[loop] = {}
    batcher = batchers.get(handle)
    if batcher is None:
        batcher = batchers[handle] = LoopBatcher(handle, loop, max_items)
    return batcher


def each_going_on(items: list, outcomes: list, step) -> list:
    """Apply one step of a batch to every item (each has an `index` into `outcomes`); the items
    that go on. A step raises the DomainError its item answers with, or returns the item's final
    outcome early (not None)."""
    going_on = []
    for item in items:
        try:
            outcome = step(item)
        except DomainError as error:
            outcomes[item.index] = error
        else:
            if outcome is None:
                going_on.append(item)
            else:
                outcomes[item.index] = outcome
    return going_on
