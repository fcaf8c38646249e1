"""Which devices hold a delivery socket right now, and on which channel; the
same registry maps provisioning addresses to their sockets.

`group_send` cannot tell whether anyone listened, so presence is explicit: one key per device
holding the channel name of its delivery socket, with a TTL the socket refreshes while it lives.
No key means absent (push it); a newer socket overwrites the key and displaces the older one.

Redis when `REDIS_URL` is set (every web node sees every socket); a process-local table on the
embedded defaults, where the in-memory channel layer is process-local too.
"""

from __future__ import annotations

import threading
import time
from functools import cache

from django.conf import settings

from signalserver.errors import REDIS_UNAVAILABLE
from signalserver.redis_clients import async_redis, sync_redis

# Sockets refresh their key every PRESENCE_REFRESH_SECONDS; a node that dies without cleaning up
# leaves a key that lapses after PRESENCE_TTL_SECONDS, after which the device is pushed again.
PRESENCE_TTL_SECONDS = 90
PRESENCE_REFRESH_SECONDS = 30

# Atomically: refresh the key only while it still names this socket / delete only our own key.
_REFRESH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
# Claim again unless another socket holds the key (Redis restarted and lost it meanwhile).
_RECLAIM = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
end
return 0
"""


def presence_key(aci, device_id: int) -> str:
    return f"presence:{aci}:{device_id}"


class _DevicePresence:
    """Device presence on top of the key primitives every backend implements."""

    async def claim(self, aci, device_id: int, channel: str) -> str | None:
        """Make `channel` the device's delivery socket; returns the channel it displaced, if any."""
        return await self.claim_key(presence_key(aci, device_id), channel, PRESENCE_TTL_SECONDS)

    async def refresh(self, aci, device_id: int, channel: str) -> bool:
        """Keep the claim alive; False when another socket has taken the device over (True while
        Redis cannot be reached: the socket claims the device again once it is back)."""
        return await self.refresh_key(presence_key(aci, device_id), channel, PRESENCE_TTL_SECONDS)

    async def reclaim(self, aci, device_id: int, channel: str) -> bool:
        """After a Redis outage: claim the device again, unless another socket has meanwhile
        (False: this one is the displaced one)."""
        return await self.reclaim_key(presence_key(aci, device_id), channel, PRESENCE_TTL_SECONDS)

    async def release(self, aci, device_id: int, channel: str) -> None:
        await self.release_key(presence_key(aci, device_id), channel)

    def lookup(self, devices: list[tuple[object, int]]) -> list[str | None]:
        """The delivery channel of each (aci, device id), None for an absent device; one round trip."""
        return self.lookup_keys([presence_key(aci, device_id) for aci, device_id in devices])

    async def alookup(self, devices: list[tuple[object, int]]) -> list[str | None]:
        return await self.alookup_keys([presence_key(aci, device_id) for aci, device_id in devices])


class RedisPresence(_DevicePresence):
    async def claim_key(self, key: str, channel: str, ttl: int) -> str | None:
        previous = await async_redis().set(key, channel, ex=ttl, get=True)
        return previous.decode() if previous else None

    async def refresh_key(self, key: str, channel: str, ttl: int) -> bool:
        try:
            return bool(await async_redis().eval(_REFRESH, 1, key, channel, ttl))
        except REDIS_UNAVAILABLE:
            return True  # cannot tell; the socket's channel reader claims it again (`reclaim`)

    async def reclaim_key(self, key: str, channel: str, ttl: int) -> bool:
        return bool(await async_redis().eval(_RECLAIM, 1, key, channel, ttl))

    async def release_key(self, key: str, channel: str) -> None:
        try:
            await async_redis().eval(_RELEASE, 1, key, channel)
        except REDIS_UNAVAILABLE:
            pass  # the key lapses with its TTL (or went with the Redis that lost it)

    def lookup_keys(self, keys: list[str]) -> list[str | None]:
        if not keys:
            return []
        return [value.decode() if value else None for value in sync_redis().mget(keys)]

    async def alookup_keys(self, keys: list[str]) -> list[str | None]:
        if not keys:
            return []
        return [value.decode() if value else None for value in await async_redis().mget(keys)]


class LocalPresence(_DevicePresence):
    def __init__(self):
        self._lock = threading.Lock()
        self._channels: dict[str, tuple[str, float]] = {}

    def _live(self, key: str) -> str | None:
        entry = self._channels.get(key)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    async def claim_key(self, key: str, channel: str, ttl: int) -> str | None:
        with self._lock:
            previous = self._live(key)
            self._channels[key] = (channel, time.monotonic() + ttl)
        return previous

    async def refresh_key(self, key: str, channel: str, ttl: int) -> bool:
        with self._lock:
            if self._live(key) != channel:
                return False
            self._channels[key] = (channel, time.monotonic() + ttl)
            return True

    async def reclaim_key(self, key: str, channel: str, ttl: int) -> bool:
        with self._lock:
            if self._live(key) not in (None, channel):
                return False
            self._channels[key] = (channel, time.monotonic() + ttl)
            return True

    async def release_key(self, key: str, channel: str) -> None:
        with self._lock:
            if self._live(key) == channel:
                del self._channels[key]

    def lookup_keys(self, keys: list[str]) -> list[str | None]:
        with self._lock:
            return [self._live(key) for key in keys]

    async def alookup_keys(self, keys: list[str]) -> list[str | None]:
        return self.lookup_keys(keys)


@cache
def get_presence() -> RedisPresence | LocalPresence:
    return RedisPresence() if settings.REDIS_URL else LocalPresence()
