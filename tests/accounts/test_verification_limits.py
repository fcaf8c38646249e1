"""Limits on verification across sessions: new sessions and code sends per number and per client
address. Every code sent costs the operator money, so opening session after session must not send
code after code (SMS pumping)."""

import math

import pytest
from asgiref.sync import sync_to_async
from rest_framework.test import APIClient

from accounts.models import VerificationSession
from signalserver import ratelimit
from signalserver.wire import b64decode_url
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, FakeTwilio
from tests.messaging.helpers import socket_for
from tests.messaging.test_websocket import tunnel

URL = "/v1/verification/session"
NUMBER = "+14155550100"
ADDRESS, OTHER_ADDRESS = "198.51.100.7", "203.0.113.9"
pytestmark = pytest.mark.django_db


def default(name: str) -> ratelimit.Limit:
    return ratelimit.LIMITERS[name].default


def retry_after(limiter: str) -> set[str]:
    """The Retry-After of a limiter just emptied: its seconds per permit, or one less when a
    second passed since its first take (a slow run)."""
    seconds = math.ceil(default(limiter).permit_seconds)
    return {str(seconds), str(seconds - 1)}


@pytest.fixture(autouse=True)
def verification_settings(settings):
    settings.VERIFICATION_SENDER = "development"
    settings.DEV_VERIFICATION_CODE = "424242"
    settings.CAPTCHA_PROVIDER = "none"
    return settings


@pytest.fixture
def twilio(settings):
    with FakeTwilio() as fake:
        settings.VERIFICATION_SENDER = "twilio"
        settings.TWILIO_API_BASE = fake.url
        settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
        settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
        settings.TWILIO_FROM_NUMBER = FROM_NUMBER
        settings.TWILIO_MESSAGING_SERVICE_SID = ""
        settings.PROVIDER_TIMEOUT_SECONDS = 5
        yield fake


@pytest.fixture
def clock(monkeypatch):
    """The limiters' clock, moved by hand (the buckets stay real)."""
    now = {"ms": 1_900_000_000_000}
    monkeypatch.setattr(ratelimit, "clock_ms", lambda: now["ms"])

    def advance(seconds: float):
        now["ms"] += math.ceil(seconds * 1000)

    return advance


def create(client, number=NUMBER, address=ADDRESS):
    return client.post(URL, {"number": number}, format="json", REMOTE_ADDR=address)


def new_session(client, number=NUMBER, address=ADDRESS) -> str:
    response = create(client, number, address)
    assert response.status_code == 200, response.content
    return response.json()["id"]


def send(client, session_id, transport="sms", address=ADDRESS):
    body = {"transport": transport, "client": "ios"}
    return client.post(f"{URL}/{session_id}/code", body, format="json", REMOTE_ADDR=address)


def numbers(count: int) -> list[str]:
    return [f"+1415555{n:04d}" for n in range(100, 100 + count)]


def sms_sent(session_id) -> int:
    return VerificationSession.objects.get(pk=b64decode_url(session_id)).sms_sent


# --- Sessions -------------------------------------------------------------------------------------


def test_sessions_for_one_number_past_its_limit_are_429_with_retry_after(client, clock):
    allowed = default("verificationSession").bucket_size
    for _ in range(allowed):
        new_session(client)

    refused = create(client)

    assert refused.status_code == 429
    assert refused["Retry-After"] in retry_after("verificationSession")
    assert VerificationSession.objects.filter(number=NUMBER).count() == allowed
    assert create(client, number="+14155550199").status_code == 200  # counted per number
    clock(int(refused["Retry-After"]))
    assert create(client).status_code == 200


def test_sessions_from_one_address_are_limited_across_numbers(client):
    allowed = default("verificationSessionPerIp").bucket_size
    *first, last = numbers(allowed + 1)
    for number in first:
        new_session(client, number)

    refused = create(client, last)

    assert refused.status_code == 429
    assert refused["Retry-After"] in retry_after("verificationSessionPerIp")
    assert not VerificationSession.objects.filter(number=last).exists()
    assert create(client, last, address=OTHER_ADDRESS).status_code == 200


@pytest.mark.django_db(transaction=True)
async def test_sessions_opened_over_the_socket_count_against_the_same_number_limit():
    client = APIClient()
    for _ in range(default("verificationSession").bucket_size):
        await sync_to_async(new_session)(client)
    ws = socket_for()
    assert (await ws.connect())[0]

    refused = await tunnel(ws, "POST", URL, {"number": NUMBER})
    accepted = await tunnel(ws, "POST", URL, {"number": "+14155550199"}, request_id=8)
    await ws.disconnect()

    assert refused.status == 429
    assert {f"Retry-After:{value}" for value in retry_after("verificationSession")} & {h.replace(" ", "") for h in refused.headers}
    assert accepted.status == 200  # no client address known here: the per-address limit lets it pass


# --- Codes ----------------------------------------------------------------------------------------


def test_thirty_sessions_for_one_number_send_no_more_than_a_sessions_worth_of_sms(client, twilio):
    statuses = []
    for _ in range(30):
        created = create(client)
        statuses.append(created.status_code)
        if created.status_code == 200:
            statuses.append(send(client, created.json()["id"]).status_code)

    assert len(twilio.messages) == default("verificationCode").bucket_size
    assert statuses.count(429) == 30 - len(twilio.messages)


def test_codes_for_one_number_are_limited_across_sessions_and_the_waits_grow(client, clock):
    short, daily = default("verificationCode"), default("verificationCodeDaily")
    sent, waits, refusal = 0, [], None
    session = new_session(client)
    # A fresh session for every code, so that only the number's limits stand in the way; waiting
    # exactly as told each time.
    while len(waits) < 20:
        response = send(client, session)
        if response.status_code == 200:
            sent += 1
            session = new_session(client)
            continue
        assert response.status_code == 429, response.content
        waits.append(int(response["Retry-After"]))
        refusal = response.json()
        assert refusal["id"] == session and refusal["nextSms"] == waits[-1]  # the body is the session
        assert sms_sent(session) == 0
        if waits[-1] > short.permit_seconds:
            break
        clock(waits[-1])

    # A session's worth at once, then one every 10 minutes until the daily bucket is drained too;
    # by then it has 5 × 10 min of leak back (5/12 of a permit), the rest takes 7/12 × 2 h (4200 s,
    # give or take the rounding up of a float).
    assert sent == daily.bucket_size
    assert waits[:-1] == [short.permit_seconds] * (daily.bucket_size - short.bucket_size)
    assert 4200 <= waits[-1] <= 4201
    clock(waits[-1])
    assert send(client, session).status_code == 200


def test_code_sends_from_one_address_are_limited_across_numbers(client):
    allowed = default("verificationCodePerIp").bucket_size
    *first, last = numbers(allowed + 1)
    for number in first:
        assert send(client, new_session(client, number)).status_code == 200
    session = new_session(client, last)

    refused = send(client, session)

    assert refused.status_code == 429
    assert refused["Retry-After"] in retry_after("verificationCodePerIp")
    assert refused.json()["id"] == session and sms_sent(session) == 0
    assert send(client, session, address=OTHER_ADDRESS).status_code == 200


def test_a_code_the_session_refuses_takes_no_permit_from_the_number(client):
    session = new_session(client)
    assert send(client, session).status_code == 200
    for _ in range(2 * default("verificationCode").bucket_size):
        assert send(client, session).status_code == 429  # the session's own 1-minute wait

    for _ in range(default("verificationCode").bucket_size - 1):
        assert send(client, new_session(client)).status_code == 200
