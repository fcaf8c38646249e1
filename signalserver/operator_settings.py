"""What operators set in the admin, as every process sees it: limiter overrides and banned IP
ranges, read from the database once and kept until they change.

A change (admin save, delete or action) bumps a version number in Redis. The rate-limit script
compares that version with the one the process's copy came from on every check, and the IP-ban
middleware reads it on every request, so a change holds from the next request on every node
without a restart and without a database query per request. The embedded run keeps the version in
the process, where the admin runs too.
"""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction

from signalserver.limiters import Limit, Limiter

VERSION_KEY = "operator-settings:version"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class OperatorSettings:
    version: str
    global_limits: dict[str, Limit] = field(default_factory=dict)
    account_limits: dict[tuple[str, str], Limit] = field(default_factory=dict)  # (limiter, ACI)
    banned_networks: tuple[Network, ...] = ()

    def limit(self, limiter: Limiter, aci=None) -> Limit:
        if aci is not None and self.account_limits:
            found = self.account_limits.get((limiter.name, str(aci)))
            if found is not None:
                return found
        return self.global_limits.get(limiter.name, limiter.default)

    def ip_banned(self, ip: str | None) -> bool:
        if not self.banned_networks or not ip:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self.banned_networks)


_lock = threading.Lock()
_current: OperatorSettings | None = None
_local_version = 0  # the embedded run's version (no Redis)


def _read_version() -> str:
    if not settings.REDIS_URL:
        return str(_local_version)
    from signalserver.redis_clients import sync_redis

    value = sync_redis().get(VERSION_KEY)
    return value.decode() if value else "0"


def _load(version: str) -> OperatorSettings:
    from signalserver.models import IpBan, LimitOverride

    global_limits, account_limits = {}, {}
    for override in LimitOverride.objects.all():
        limit = Limit(override.bucket_size, override.permit_seconds)
        if override.account_id is None:
            global_limits[override.limiter] = limit
        else:
            account_limits[(override.limiter, str(override.account_id))] = limit
    networks = tuple(ipaddress.ip_network(ban.network, strict=False) for ban in IpBan.objects.all())
    return OperatorSettings(version, global_limits, account_limits, networks)


def reload() -> OperatorSettings:
    """Read the settings again. The version is read first: a change committed after it bumps the
    version again, so a copy can be older than its version says but never newer."""
    global _current
    version = _read_version()
    loaded = _load(version)
    with _lock:
        _current = loaded
    return loaded


def cached() -> OperatorSettings | None:
    return _current


def current() -> OperatorSettings:
    return _current if _current is not None else reload()


async def acurrent() -> OperatorSettings:
    """The settings, checked against the version in Redis (one GET): for the per-request IP check."""
    from signalserver.db import in_db_thread

    cached = _current
    if settings.REDIS_URL:
        from signalserver.redis_clients import async_redis

        value = await async_redis().get(VERSION_KEY)
        version = value.decode() if value else "0"
    else:
        version = str(_local_version)
    if cached is not None and cached.version == version:
        return cached
    # Outside any request: the connection it opens goes back to the pool when the thread is done.
    return await in_db_thread(reload)()


def changed() -> None:
    """Call after changing an override or a ban: every process reloads on its next request. Bumped
    now (so this transaction's own requests see it) and again after commit (so no process keeps a
    copy read between the two)."""

    def bump():
        global _local_version, _current
        if settings.REDIS_URL:
            from signalserver.redis_clients import sync_redis

            sync_redis().incr(VERSION_KEY)
        else:
            _local_version += 1
        with _lock:
            _current = None

    bump()
    transaction.on_commit(bump)


def forget() -> None:
    """Drop this process's copy (tests: the database was rolled back under it)."""
    global _current
    with _lock:
        _current = None
