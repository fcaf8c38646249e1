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

# Keyed by the loop itself, not its id(): a new loop can reuse the id of a closed one.
_async_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


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
