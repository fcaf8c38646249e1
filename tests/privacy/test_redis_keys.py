"""Redis keys (docs/privacy.md): a rate-limit bucket is stored only while it is short of permits
and expires the moment it would be full again; presence and provisioning keys expire on their own
and go with their socket; no key or value names a phone number, a client address or a session id
in clear, nor who writes to whom."""

import math
import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from signalserver import operator_settings, ratelimit
from signalserver.asgi import application
from signalserver.redis_clients import sync_redis
from signalserver.wire import b64decode_url
from tests.messaging.helpers import next_request
from tests.privacy import dump
from tests.privacy.people import Person, verification_settings

ALICE_IP, BOB_IP = "203.0.113.7", "2001:db8::7"
BYTE_LIMITERS = {name for name, limiter in ratelimit.LIMITERS.items() if "bytes" in limiter.keyed_by}


@pytest.fixture
def clock(monkeypatch):
    now = {"ms": 1_900_000_000_000}
    monkeypatch.setattr(ratelimit, "clock_ms", lambda: now["ms"])
    return now


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(ratelimit.LIMITERS))
def test_each_limiters_bucket_expires_when_it_would_be_full_again(name, clock):
    limit = ratelimit.LIMITERS[name].default
    # At least 5 s worth of permits (a byte limiter's permit comes back in microseconds).
    permits = min(limit.bucket_size, math.ceil(5 / limit.permit_seconds)) if name in BYTE_LIMITERS else 1
    key = ratelimit.hashed(str(uuid.uuid4()))
    ratelimit.check(name, key, permits=permits)

    refill_ms = math.ceil(permits * limit.permit_seconds * 1000)
    ttl = sync_redis().pttl(ratelimit.bucket_key(name, key))
    assert refill_ms - 2000 < ttl <= refill_ms, (name, ttl, refill_ms)


def _limits_seconds(key: bytes) -> float | None:
    """How long the bucket of an `rl:` key can take to fill (its limiter's size × permit time)."""
    if not key.startswith(b"rl:"):
        return None
    limit = ratelimit.LIMITERS[key.decode().split(":")[1]].default
    return limit.bucket_size * limit.permit_seconds


@pytest.mark.django_db
def test_the_keys_of_a_busy_minute_name_no_number_address_session_or_correspondents(settings, client):
    verification_settings(settings)
    alice = Person("+442079460201", ALICE_IP).register()
    bob = Person("+14155550202", BOB_IP).register()
    stranger = Person("+442079460203", ALICE_IP)
    session = stranger.verify_number()
    for field in ("captcha", "pushChallenge"):  # the session's own buckets, keyed by its id
        stranger.http().patch(f"/v1/verification/session/{session}", {field: "wrong"}, format="json")
    # Every limiter keyed by a number, an address or a pair of accounts, from both addresses.
    alice.send(bob, b"hello", timestamp=1)
    assert alice.http(1).get(f"/v2/keys/{bob.aci}/1").status_code == 200
    for person in (alice, bob):
        anonymous, http = person.http(), person.http(1)
        assert anonymous.head(f"/v1/accounts/account/{uuid.uuid4()}").status_code == 404
        assert anonymous.get(f"/v1/accounts/username_hash/{'A' * 43}").status_code == 404
        assert anonymous.get(f"/v1/accounts/username_link/{uuid.uuid4()}").status_code == 404
        assert http.post("/v1/profile/identity_check/batch", {"elements": []}, format="json").status_code == 200
        assert http.post("/v1/directory/lookup", {"newE164s": [stranger.number]}, format="json").status_code == 200

    cells = dump.redis()
    keys = [cell for cell in cells if cell.place.endswith("(key)")]
    assert {cell.value.split(b":")[1] for cell in keys if cell.value.startswith(b"rl:")} >= {
        b"verificationSession", b"verificationSessionPerIp", b"verificationCode", b"verificationCodeDaily",
        b"verificationCodePerIp", b"verificationCaptcha", b"verificationPushChallenge", b"registration",
        b"messages", b"prekeys", b"checkAccountExistence", b"usernameLookup",
        b"usernameLinkLookupPerIp", b"batchIdentityCheck", b"directoryLookup", b"directoryLookupPerIp",
    }
    numbers = [form for person in (alice, bob, stranger) for form in dump.number_forms(person.number)]
    addresses = dump.address_forms(ALICE_IP) + dump.address_forms(BOB_IP)
    raw_session = b64decode_url(session)
    assert dump.where(dump.find(cells, numbers)) == []
    assert dump.where(dump.find(cells, addresses)) == []
    assert dump.where(dump.find(cells, [raw_session, raw_session.hex().encode(), session.rstrip("=").encode()])) == []
    # Who wrote to whom: no key names both accounts (the `messages` and `prekeys` pairs are hashed).
    assert dump.where([cell for cell in dump.find(cells, dump.uuid_forms(alice.aci)) if dump.find([cell], dump.uuid_forms(bob.aci))]) == []
    for cell in keys:
        if cell.value == operator_settings.VERSION_KEY.encode() or cell.value.startswith(b"_kombu.binding"):
            continue  # a counter of operator changes; Celery's routing table (queue names), left by a worker
        ttl = sync_redis().pttl(cell.value)
        assert ttl > 0, f"{cell.value!r} never expires"
        longest = _limits_seconds(cell.value)
        assert longest is None or ttl <= longest * 1000, (cell.value, ttl)


@pytest.mark.django_db(transaction=True)
async def test_presence_and_provisioning_keys_expire_and_go_with_their_socket(settings):
    await sync_to_async(verification_settings)(settings)
    alice = await sync_to_async(Person("+442079460204", ALICE_IP).register)()
    chat = alice.socket()
    assert (await chat.connect())[0]
    await next_request(chat)  # queue empty: the socket holds the device now
    provisioning = WebsocketCommunicator(application, "/v1/websocket/provisioning/")
    assert (await provisioning.connect())[0]
    await next_request(provisioning)  # its address

    cells = await sync_to_async(dump.redis)()
    keys = [cell.value for cell in cells if cell.place.endswith("(key)")]
    presence = f"presence:{alice.aci}:1".encode()
    assert presence in keys and 0 < sync_redis().ttl(presence) <= 90
    addresses = [key for key in keys if key.startswith(b"provisioning:")]
    assert addresses and all(0 < sync_redis().ttl(address) <= 90 for address in addresses)
    naming_alice = [cell.place for cell in dump.find(cells, dump.uuid_forms(alice.aci))]
    assert naming_alice and all(sync_redis().ttl(place.removeprefix("redis:").removesuffix(" (key)")) > 0 for place in naming_alice)
    assert dump.where(dump.find(cells, dump.address_forms(ALICE_IP) + dump.number_forms(alice.number))) == []

    await chat.disconnect()
    await provisioning.disconnect()
    left = [cell.value for cell in await sync_to_async(dump.redis)() if cell.place.endswith("(key)")]
    assert presence not in left and not set(addresses) & set(left)
