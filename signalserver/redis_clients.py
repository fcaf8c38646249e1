"""The process's Redis clients (presence, rate limits, operator settings), one per kind, and the
channel layer's connections.

A synchronous client for code running in threads (services, views) and an asyncio client per event
loop for consumers and ASGI middleware: a `redis.asyncio` connection belongs to the loop that made it.
Only used when `REDIS_URL` is set; the embedded run keeps the same state in the process.

Each takes its connections from a pool of at most REDIS_MAX_CONNECTIONS that, when all are busy,
waits up to REDIS_POOL_TIMEOUT_SECONDS for one to come back (then it fails as Redis being down
does). Without a bound, 10,000 sockets closing at once opened a connection each, until Redis
refused every client (docs/performance.md, "Bounded connections"). The connections are named
(`CLIENT LIST`): signalserver-sync, signalserver-async and signalserver-layer.
"""

from __future__ import annotations

import asyncio
import weakref
from functools import cache

import redis
import redis.asyncio
from channels_redis.core import RedisChannelLayer
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


def _bounded(kind: str) -> dict:
    """Options of a pool that holds at most REDIS_MAX_CONNECTIONS and waits for a free one."""
    return {
        "max_connections": settings.REDIS_MAX_CONNECTIONS,
        "timeout": settings.REDIS_POOL_TIMEOUT_SECONDS,
        "client_name": f"signalserver-{kind}",
    }


@cache
def sync_redis() -> redis.Redis:
    pool = redis.BlockingConnectionPool.from_url(
        settings.REDIS_URL,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        **_bounded("sync"),
    )
    return redis.Redis(connection_pool=pool)


def async_redis() -> redis.asyncio.Redis:
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
            **_bounded("async"),
        )
        client = _async_clients[loop] = redis.asyncio.Redis(connection_pool=pool)
    return client


class ChannelLayer(RedisChannelLayer):
    """channels_redis's layer, its connections (a pool per event loop) bounded as the clients'
    above: its own pools have no bound. Hosts are given by `address` (settings.CHANNEL_LAYERS)."""

    def create_pool(self, index):
        host = dict(self.hosts[index])
        return redis.asyncio.BlockingConnectionPool.from_url(host.pop("address"), **_bounded("layer"), **host)


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
