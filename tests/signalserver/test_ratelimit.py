"""The token buckets themselves: every named limiter trips at its bucket size and gets
permits back at its leak rate, in Redis (the Lua script) and in the embedded in-process backend."""

import math
import uuid

import pytest

from signalserver import operator_settings, ratelimit
from signalserver.errors import RateLimited
from signalserver.redis_clients import sync_redis
from tests.factories import AccountFactory, override_limit

pytestmark = pytest.mark.django_db

# Limiters counted in bytes: too big to spend one permit at a time, so they are spent in one go.
BYTE_LIMITERS = {name for name, limiter in ratelimit.LIMITERS.items() if "bytes" in limiter.keyed_by}


@pytest.fixture
def clock(monkeypatch):
    """The limiters' clock, moved by hand (the buckets stay real)."""
    now = {"ms": 1_900_000_000_000}
    monkeypatch.setattr(ratelimit, "clock_ms", lambda: now["ms"])

    def advance(seconds: float):
        now["ms"] += math.ceil(seconds * 1000)

    return advance


@pytest.fixture(params=["redis", "local"])
def backend(request, monkeypatch):
    if request.param == "local":
        monkeypatch.setattr(ratelimit, "buckets", lambda local=ratelimit.LocalBuckets(): local)
    return request.param


def spend(name, key, permits=1):
    ratelimit.check(name, key, permits=permits)


@pytest.mark.parametrize("name", sorted(ratelimit.LIMITERS))
def test_each_limiter_trips_at_its_bucket_size_and_recovers_at_its_leak_rate(name, clock, backend):
    limit = ratelimit.LIMITERS[name].default
    key = uuid.uuid4().hex
    if name in BYTE_LIMITERS:
        spend(name, key, limit.bucket_size)
    else:
        for _ in range(limit.bucket_size):
            spend(name, key)

    with pytest.raises(RateLimited) as refused:
        spend(name, key)
    assert refused.value.retry_after == math.ceil(limit.permit_seconds)
    assert refused.value.headers["Retry-After"] == str(math.ceil(limit.permit_seconds))

    # Permits come back at the leak rate: after one regeneration period (a second for the byte
    # limiters, whose period is below a millisecond) exactly that many are back.
    waited = max(limit.permit_seconds, 1.0)
    clock(waited)
    spend(name, key, round(waited / limit.permit_seconds))
    with pytest.raises(RateLimited):
        spend(name, key)


def test_retry_after_is_the_deficit_rounded_up(clock, backend):
    override_limit("messages", 10, 2.5)  # one permit every 2.5 s
    spend("messages", "k", 10)
    clock(1)
    with pytest.raises(RateLimited) as refused:
        spend("messages", "k", 3)  # 0.4 permits there, 2.6 missing: 6.5 s
    assert refused.value.retry_after == 7


def test_a_full_bucket_is_not_stored_and_a_used_one_expires_when_it_would_be_full(clock):
    spend("checkTotp", "full")
    key = ratelimit.bucket_key("checkTotp", "full")
    assert 0 < sync_redis().pttl(key) <= 6000  # one permit gone: back in 6 s
    ratelimit.reset("checkTotp", "full")
    assert not sync_redis().exists(key)


def test_buckets_are_separate_per_key_and_per_limiter(clock, backend):
    for _ in range(5):
        spend("checkTotp", "a")
    with pytest.raises(RateLimited):
        spend("checkTotp", "a")
    spend("checkTotp", "b")
    spend("allocateDevice", "a")


def test_an_account_override_applies_to_that_account_only(clock, backend):
    account, other = AccountFactory(), AccountFactory()
    override_limit("checkTotp", 1, 60, account=account)

    ratelimit.check("checkTotp", str(account.aci), aci=account.aci)
    with pytest.raises(RateLimited) as refused:
        ratelimit.check("checkTotp", str(account.aci), aci=account.aci)
    assert refused.value.retry_after == 60
    for _ in range(5):
        ratelimit.check("checkTotp", str(other.aci), aci=other.aci)


def test_another_process_changing_the_settings_is_noticed_by_the_next_check(clock):
    spend("checkTotp", "x")  # this process has read the settings
    from signalserver.models import LimitOverride

    # As another node's admin would: the row, and the version bumped in Redis (not this process's copy).
    LimitOverride.objects.create(limiter="checkTotp", bucket_size=1, permit_seconds=60)
    sync_redis().incr(operator_settings.VERSION_KEY)

    spend("checkTotp", "y")
    with pytest.raises(RateLimited) as refused:
        spend("checkTotp", "y")
    assert refused.value.retry_after == 60


def test_keys_with_numbers_or_addresses_are_hashed(client):
    number = "+14155550123"
    client.post("/v1/registration", {"sessionId": "x"}, format="json")
    ratelimit.check("registration", ratelimit.hashed(number))
    ratelimit.check("checkAccountExistence", ratelimit.hashed("127.0.0.1"))

    keys = b" ".join(sync_redis().scan_iter(match="rl:*"))
    assert keys and b"4155550123" not in keys and b"127.0.0.1" not in keys
    assert ratelimit.hashed(number) != ratelimit.hashed("+14155550124")


def test_without_a_key_fail_open_limiters_pass_and_the_others_refuse_for_an_hour():
    ratelimit.check("checkAccountExistence", None)
    with pytest.raises(RateLimited) as refused:
        ratelimit.check("registration", None)
    assert refused.value.retry_after == 3600


def test_looking_takes_nothing(clock, backend):
    for _ in range(4):
        spend("checkTotp", "look")
    assert ratelimit.available("checkTotp", "look")
    assert ratelimit.available("checkTotp", "look")
    spend("checkTotp", "look")
    assert not ratelimit.available("checkTotp", "look")


def test_several_buckets_are_taken_all_or_none(clock, backend):
    """A send takes its `messages` and `inboundMessageBytes` permits in one call: when one bucket is
    short, the other keeps its permits, and the refusal names the limiter that was short."""
    override_limit("messages", 5, 1)
    override_limit("inboundMessageBytes", 100, 1)
    both = [ratelimit.Take("messages", "pair"), ratelimit.Take("inboundMessageBytes", "recipient", 60)]
    ratelimit.check_all(both)
    with pytest.raises(RateLimited) as refused:
        ratelimit.check_all(both)  # 40 bytes left, 60 wanted
    assert refused.value.limiter == "inboundMessageBytes"
    assert refused.value.retry_after == 20

    spend("messages", "pair", 4)  # the refused call took nothing from `messages`
    with pytest.raises(RateLimited) as refused:
        spend("messages", "pair")
    assert refused.value.limiter == "messages"
    spend("inboundMessageBytes", "recipient", 40)


def test_a_batch_of_checks_is_answered_check_by_check_in_one_call(clock, backend):
    """A batch of sends checks its buckets in one call: each check all or none, in order, each
    seeing what the checks before it took; one refused check leaves the others alone."""
    override_limit("messages", 2, 1)
    override_limit("inboundMessageBytes", 100, 1)

    def send(pair, recipient, size):
        return [ratelimit.Take("messages", pair), ratelimit.Take("inboundMessageBytes", recipient, size)]

    failures = ratelimit.check_each(
        [
            send("a", "r", 10),
            send("a", "r", 10),
            send("a", "r", 10),  # the pair's third message in the bucket of two
            send("b", "r", 90),  # 80 bytes left for r: refused, and takes nothing from b
            send("b", "r", 80),
            [ratelimit.Take("messages", None)],  # no key: `messages` fails open
        ]
    )
    assert [None if f is None else (f.limiter, f.retry_after) for f in failures] == [
        None,
        None,
        ("messages", 1),
        ("inboundMessageBytes", 10),
        None,
        None,
    ]
    spend("messages", "b")  # the refused check took nothing: b's second permit is left
    assert not ratelimit.available("messages", "b")
    assert not ratelimit.available("inboundMessageBytes", "r")
    assert ratelimit.check_each([]) == []
