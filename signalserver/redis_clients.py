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
import collections
import hashlib
import time
import weakref
from functools import cache

import redis
import redis.asyncio
from channels.exceptions import ChannelFull
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


# A send in one round trip, where channels_redis awaits four commands in turn: drop what expired,
# check the capacity, add, renew the expiry. KEYS[1]: the channel's sorted set; ARGV: the highest
# expired score, the capacity, the expiry (seconds), the score and the message. 0: full.
_SEND = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""
_SEND_SHA = hashlib.sha1(_SEND.encode()).hexdigest()
# A message carrying messages for several channels of one process: [[channel, message], ...].
BUNDLE = "__bundle__"
# Closed channels whose late messages are dropped: many more than close within the layer's expiry.
CLOSED_CHANNELS_REMEMBERED = 10_000


class ChannelLayer(RedisChannelLayer):
    """channels_redis's layer, its connections (a pool per event loop) bounded as the clients'
    above: its own pools have no bound. Hosts are given by `address` (settings.CHANNEL_LAYERS).

    Sends take one round trip (a script), and `send_many` hands messages for many sockets to their
    processes with one layer message per process: every message between processes used to cost
    eight Redis commands in two serial chains (docs/performance.md, "Relay across processes")."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.closed_channels: collections.OrderedDict[str, None] = collections.OrderedDict()

    def create_pool(self, index):
        host = dict(self.hosts[index])
        return redis.asyncio.BlockingConnectionPool.from_url(host.pop("address"), **_bounded("layer"), **host)

    def forget(self, channel: str) -> None:
        """The socket of this process-local `channel` is gone for good: drop what waits for it, and
        what arrives for it later (a send that found it present just before it closed). Without
        this, each such late message kept a buffer that nobody would read."""
        self.receive_buffer.pop(channel, None)
        self.closed_channels[channel] = None
        if len(self.closed_channels) > CLOSED_CHANNELS_REMEMBERED:
            self.closed_channels.popitem(last=False)

    async def send(self, channel: str, message: dict) -> None:
        assert isinstance(message, dict) and "__asgi_channel__" not in message and BUNDLE not in message
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        if "!" in channel:  # a process-local channel: its process's queue, the full name inside
            message, key = {**message, "__asgi_channel__": channel}, self.non_local_name(channel)
            index = self.consistent_hash(key)
        else:
            key, index = channel, next(self._send_index_generator)
        if not await self._add(index, key, message, self.get_capacity(channel)):
            raise ChannelFull()

    async def send_many(self, messages: list[tuple[str, dict]]) -> list[str]:
        """Send each (process-local channel, message): one layer message per destination process,
        in one round trip each. Returns the channels whose process's queue was full (nothing was
        sent to them). Messages to one channel arrive in order."""
        by_process: dict[str, list] = {}
        for channel, message in messages:
            assert "!" in channel and self.require_valid_channel_name(channel), "not a process-local channel"
            by_process.setdefault(self.non_local_name(channel), []).append([channel, message])
        full: list[str] = []
        for key, bundle in by_process.items():
            if not await self._add(self.consistent_hash(key), key, {BUNDLE: bundle}, self.get_capacity(key)):
                full.extend(channel for channel, _ in bundle)
        return full

    async def _add(self, index: int, key: str, message: dict, capacity: int) -> bool:
        now = time.time()
        connection = self.connection(index)
        args = [int(now) - int(self.expiry), capacity, int(self.expiry), now, self.serialize(message)]
        try:
            added = await connection.evalsha(_SEND_SHA, 1, self.prefix + key, *args)
        except redis.exceptions.NoScriptError:  # a restarted Redis: it learns the script again
            added = await connection.eval(_SEND, 1, self.prefix + key, *args)
        return bool(added)

    async def receive_single(self, channel: str):
        """As channels_redis receives one message; a bundle's other messages go straight to the
        buffers their channels' receivers read. Messages for forgotten channels are dropped."""
        while True:
            name, message = await super().receive_single(channel)
            bundle = message.get(BUNDLE)
            if bundle is None:
                if isinstance(name, list):  # a group's message, for several channels of this process
                    name = [each for each in name if each not in self.closed_channels]
                    if name:
                        return name, message
                elif name not in self.closed_channels:
                    return name, message
                continue
            entries = [entry for entry in bundle if entry[0] not in self.closed_channels]
            if not entries:
                continue
            for name, each in entries[:-1]:
                self.receive_buffer[name].put_nowait(each)
            return entries[-1][0], entries[-1][1]  # buffered by our caller, after the others: in order


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
