"""The process's Redis clients (presence, rate limits, operator settings), one per kind.

A synchronous client for code running in threads (services, views) and an asyncio client per event
loop for consumers and ASGI middleware: a `redis.asyncio` connection belongs to the loop that made it.
Only used when `REDIS_URL` is set; the embedded run keeps the same state in the process.
"""

from __future__ import annotations

import asyncio
import weakref
from functools import cache

import redis
import redis.asyncio
from django.conf import settings

# Short timeouts: a limiter that fails open must not hold a request for redis-py's defaults.
SOCKET_TIMEOUT_SECONDS = 2
# While Redis is unreachable, how often (seconds) it is asked again: first often, then every
# PROBE_MAX_SECONDS, so sockets waiting for it resume within that long of its return.
PROBE_FIRST_SECONDS = 0.05
PROBE_MAX_SECONDS = 0.5

# Keyed by the loop itself, not its id(): a new loop can reuse the id of a closed one.
_async_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_probes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@cache
def sync_redis() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=SOCKET_TIMEOUT_SECONDS, socket_connect_timeout=SOCKET_TIMEOUT_SECONDS
    )


def async_redis() -> redis.asyncio.Redis:
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = _async_clients[loop] = redis.asyncio.Redis.from_url(
            settings.REDIS_URL, socket_timeout=SOCKET_TIMEOUT_SECONDS, socket_connect_timeout=SOCKET_TIMEOUT_SECONDS
        )
    return client


async def wait_for_redis() -> None:
    """Return once Redis answers again. However many sockets wait, one probe per event loop asks
    (PING, PROBE_FIRST_SECONDS apart at first, PROBE_MAX_SECONDS at most)."""
    loop = asyncio.get_running_loop()
    probe = _probes.get(loop)
    if probe is None or probe.done():
        probe = _probes[loop] = loop.create_task(_probe())
    await asyncio.shield(probe)


async def _probe() -> None:
    delay = PROBE_FIRST_SECONDS
    while True:
        try:
            await async_redis().ping()
            return
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
            pass
        await asyncio.sleep(delay)
        delay = min(delay * 2, PROBE_MAX_SECONDS)
