"""Named token-bucket rate limiters (docs/architecture.md §7).

A bucket per (limiter, key) holds up to `bucket_size` permits and gets one back every
`permit_seconds` (a continuous leak). A check asks for N permits (1, or a byte count) and either
takes them or fails with the time until enough are back, which becomes `Retry-After`. Defaults are
the table in `signalserver.limiters`; operators override a limiter for everyone or for one account
in the admin, and the change holds from the next request on every node (see `operator_settings`).

With `REDIS_URL` the bucket lives in Redis and one Lua script checks and takes atomically, together
with the check that this process's overrides are current. Without it (the embedded run) a
process-local table does the same.

Services call `check` (never views), so REST and tunnelled WebSocket requests share every limit.
Keys that hold a phone number or an IP address are hashed with a key derived from SECRET_KEY
(`hashed`): Redis never sees them, and the hash cannot be reversed by trying every number. So are
both sides of a pair key (`pair_key`), so that Redis does not show who writes to whom. A bucket
is stored only while it is short of permits: its key expires the moment it would be full again.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from functools import cache
from typing import NamedTuple

from django.conf import settings
from redis.exceptions import RedisError

from signalserver import metrics, operator_settings
from signalserver.crypto import server_key
from signalserver.errors import DomainError, RateLimited, ServiceUnavailable
from signalserver.limiters import LIMITERS, Limit, Limiter

logger = logging.getLogger(__name__)

# When the key (an IP) is unknown, a limiter that does not fail open asks to come back in an hour.
UNKNOWN_KEY_RETRY_SECONDS = 3600


def hashed(value: str) -> str:
    """A number or an IP address as a rate-limit key: keyed, so it cannot be reversed by guessing."""
    # BLAKE2b keyed: a MAC in one call, a third of HMAC-SHA256's time (two per 1:1 send).
    return hashlib.blake2b(value.encode(), key=server_key("rate-limit keys"), digest_size=16).hexdigest()


def pair_key(source, destination) -> str:
    """The key of a limiter counted per (sender, recipient), e.g. `messages`: keyed hashes of both
    sides, `hashed(source)__hashed(destination)`; a destination `*` matches every recipient."""
    return f"{hashed(str(source))}__{'*' if destination == '*' else hashed(str(destination))}"


def bucket_key(name: str, key: str) -> str:
    return f"rl:{name}:{key}"


# ---- buckets --------------------------------------------------------------------------------

# KEYS[1] the operator-settings version, KEYS[2..] the buckets of every check in order. ARGV: the
# version the caller's limits come from, now (ms), "1" to only look, then per check its bucket count
# n and n times the bucket's size, ms per permit and permits wanted. Each check takes from all its
# buckets or none, in order, seeing what the checks before it took. Returns {-2} when the caller's
# limits are out of date (nothing taken), else two numbers per check: -1, 0 when every bucket had
# the permits (taken unless looking), or i, ms: bucket i (from 0) is short, ms until it has them.
_TAKE = """
if (redis.call('GET', KEYS[1]) or '0') ~= ARGV[1] then return {-2} end
local now = tonumber(ARGV[2])
local out = {}
local key, arg = 2, 4
while arg <= #ARGV do
  local n = tonumber(ARGV[arg])
  arg = arg + 1
  local left, short, wait = {}, -1, 0
  for i = 0, n - 1 do
    local size, per, want = tonumber(ARGV[arg + 3 * i]), tonumber(ARGV[arg + 3 * i + 1]), tonumber(ARGV[arg + 3 * i + 2])
    local state = redis.call('HMGET', KEYS[key + i], 'p', 't')
    local permits = size
    if state[1] then
      permits = math.min(size, tonumber(state[1]) + math.max(0, now - tonumber(state[2])) / per)
    end
    if permits < want then
      short, wait = i, math.max(1, math.ceil((want - permits) * per))
      break
    end
    left[i] = permits - want
  end
  if short < 0 and ARGV[3] ~= '1' then
    for i = 0, n - 1 do
      local size, per = tonumber(ARGV[arg + 3 * i]), tonumber(ARGV[arg + 3 * i + 1])
      local refill = math.ceil((size - left[i]) * per)
      if refill <= 0 then
        redis.call('DEL', KEYS[key + i])
      else
        redis.call('HSET', KEYS[key + i], 'p', string.format('%.17g', left[i]), 't', ARGV[2])
        redis.call('PEXPIRE', KEYS[key + i], refill)
      end
    end
  end
  out[#out + 1] = short
  out[#out + 1] = wait
  key, arg = key + n, arg + 3 * n
end
return out
"""
TAKEN, STALE = -1, -2


class Take(NamedTuple):
    """One bucket of a check: `permits` from limiter `name`'s bucket for `key`, under the limits
    that hold for account `aci` (None: the limits for everyone)."""

    name: str
    key: str | None
    permits: int = 1
    aci: object = None


# A bucket as the backends see it: (Redis key, limit, permits wanted).
Bucket = tuple[str, Limit, int]


class RedisBuckets:
    def __init__(self):
        from signalserver.redis_clients import sync_redis

        self._redis = sync_redis()
        self._take = self._redis.register_script(_TAKE)

    def take(self, checks: list[list[Bucket]], now_ms: int, version: str, look: bool = False) -> list[tuple[int, int]] | None:
        """Per check (TAKEN, 0) or (index of the short bucket, ms until it has the permits); None
        when `version` is out of date."""
        keys, args = [operator_settings.VERSION_KEY], [version, now_ms, "1" if look else "0"]
        for wanted in checks:
            args.append(len(wanted))
            for key, limit, permits in wanted:
                keys.append(key)
                args += [limit.bucket_size, limit.permit_seconds * 1000, permits]
        flat = self._take(keys=keys, args=args)
        if int(flat[0]) == STALE:
            return None
        return [(int(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2)]

    def delete(self, patterns: list[str]) -> int:
        deleted = 0
        for pattern in patterns:
            keys = list(self._redis.scan_iter(match=pattern, count=500)) if "*" in pattern else [pattern]
            if keys:
                deleted += self._redis.delete(*keys)
        return deleted


class LocalBuckets:
    """The same buckets in this process (embedded run): the in-process settings are always current."""

    def __init__(self):
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, int]] = {}  # key -> (permits, at ms)

    def take(self, checks: list[list[Bucket]], now_ms: int, version: str, look: bool = False) -> list[tuple[int, int]]:
        with self._lock:
            return [self._take_one(wanted, now_ms, look) for wanted in checks]

    def _take_one(self, wanted: list[Bucket], now_ms: int, look: bool) -> tuple[int, int]:
        left = []
        for index, (key, limit, permits) in enumerate(wanted):
            per_ms = limit.permit_seconds * 1000
            available, at = self._buckets.get(key, (limit.bucket_size, now_ms))
            available = min(limit.bucket_size, available + max(0, now_ms - at) / per_ms)
            if available < permits:
                return index, max(1, math.ceil((permits - available) * per_ms))
            left.append(available - permits)
        if not look:
            for (key, limit, _), available in zip(wanted, left, strict=True):
                if available >= limit.bucket_size:
                    self._buckets.pop(key, None)
                else:
                    self._buckets[key] = (available, now_ms)
        return TAKEN, 0

    def delete(self, patterns: list[str]) -> int:
        import fnmatch

        with self._lock:
            doomed = [key for key in self._buckets if any(fnmatch.fnmatchcase(key, p) for p in patterns)]
            for key in doomed:
                del self._buckets[key]
        return len(doomed)


@cache
def buckets() -> RedisBuckets | LocalBuckets:
    return RedisBuckets() if settings.REDIS_URL else LocalBuckets()


# ---- checks -----------------------------------------------------------------------------------

# Milliseconds since the epoch; the buckets of every node compare these (NTP-synchronised clocks).
# Tests move it forward to watch a bucket refill.
clock_ms = lambda: time.time_ns() // 1_000_000  # noqa: E731


def check(name: str, key: str | None, *, permits: int = 1, aci=None) -> None:
    """Take `permits` from limiter `name`'s bucket for `key`, or raise RateLimited with the seconds
    until they are back. `aci`: the account the request acts for, whose overrides then apply.

    `key` None (e.g. no client IP known): a limiter that fails open lets the request through, the
    others refuse it for an hour.
    """
    check_all([Take(name, key, permits, aci)])


def check_all(takes: list[Take]) -> None:
    """`check` for several distinct buckets at once, in one Lua call: every bucket gives its permits
    or none does. RateLimited names the limiter that refused (`.limiter`)."""
    failure = check_each([takes])[0]
    if failure is not None:
        raise failure


def check_each(checks: list[list[Take]]) -> list[DomainError | None]:
    """Many independent `check_all`s in one Lua call (a batch of sends), in order, each seeing what
    the ones before it took. Per check: None when taken, else the error it answers with
    (RateLimited, or ServiceUnavailable when the limiter is down and the check does not fail open)."""
    failures: list[DomainError | None] = [None] * len(checks)
    asked: list[tuple[int, list[tuple[Limiter, Take]]]] = []  # (index of the check, its buckets)
    for index, takes in enumerate(checks):
        wanted = []
        for take in takes:
            limiter = LIMITERS[take.name]
            if take.key is None:
                if limiter.fail_open:
                    continue
                failures[index] = RateLimited(UNKNOWN_KEY_RETRY_SECONDS, limiter=take.name)
                metrics.count_refusal(take.name)
                break
            if take.permits > 0:
                wanted.append((limiter, take))
        else:
            if wanted:
                asked.append((index, wanted))
    if not asked:
        return failures
    try:
        outcomes = _take([wanted for _, wanted in asked])
    except RedisError as error:
        names = sorted({take.name for _, wanted in asked for _, take in wanted})
        logger.warning("rate limiter unavailable", extra={"limiters": names, "error": type(error).__name__})
        for index, wanted in asked:
            if not all(limiter.fail_open for limiter, _ in wanted):
                failures[index] = ServiceUnavailable("rate limiter unavailable")
        return failures
    for (index, wanted), (short, ms) in zip(asked, outcomes, strict=True):
        if short != TAKEN:
            failures[index] = RateLimited(math.ceil(ms / 1000), limiter=wanted[short][1].name)
            metrics.count_refusal(wanted[short][1].name)
    return failures


def available(name: str, key: str, *, permits: int = 1, aci=None) -> bool:
    """Whether `check` would let `permits` through now, without taking them (False when Redis fails)."""
    try:
        return _take([[(LIMITERS[name], Take(name, key, permits, aci))]], look=True)[0][0] == TAKEN
    except RedisError:
        return False


def _take(checks: list[list[tuple[Limiter, Take]]], look: bool = False) -> list[tuple[int, int]]:
    for _ in range(3):  # the settings changed since this process read them: read them again
        current = operator_settings.current()
        wanted = [
            [(bucket_key(limiter.name, take.key), current.limit(limiter, take.aci), take.permits) for limiter, take in check]
            for check in checks
        ]
        outcomes = buckets().take(wanted, clock_ms(), current.version, look)
        if outcomes is not None:
            return outcomes
        operator_settings.reload()
    raise RedisError("operator settings version keeps changing")


def reset(name: str, key: str) -> None:
    """Give `key` a full bucket of `name` again (e.g. after a solved challenge); `*` in the key
    matches any text (e.g. every recipient of one sender)."""
    buckets().delete([bucket_key(name, key)])


def reset_account(account) -> int:
    """Full buckets again for everything the account is counted by: its ACI, its number, and the
    messages it sent. Returns how many buckets were emptied."""
    aci = str(account.aci)
    patterns = [bucket_key(name, aci) for name, limiter in LIMITERS.items() if limiter.keyed_by == "account"]
    if account.number:
        number = hashed(account.number)
        patterns += [bucket_key(name, number) for name, limiter in LIMITERS.items() if limiter.keyed_by == "number"]
    patterns.append(bucket_key("messages", pair_key(aci, "*")))
    return buckets().delete(patterns)
