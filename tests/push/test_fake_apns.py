"""The local APNs (tests/fakes/apns.py) against the real `aioapns` client, over HTTP/2 and TLS."""

import asyncio
import socket

import aioapns
import pytest
from aioapns.common import NotificationResult, PushType
from aioapns.connection import APNsTLSClientProtocol

from tests.fakes.apns import FakeAPNs, apns_credentials, apns_server, make_apns_credentials  # noqa: F401

TOKEN = "ab" * 32
ALERT = {"aps": {"mutable-content": 1, "alert": {"loc-key": "APN_Message"}}}


def apns_client(fake: FakeAPNs, **overrides) -> aioapns.APNs:
    """aioapns with the fake's credentials (unless overridden), trusting its certificate and
    pointed at its port: aioapns names Apple's host and port on its protocol class only."""
    credentials = fake.credentials
    options = dict(
        key=credentials.key_pem, key_id=credentials.key_id, team_id=credentials.team_id, topic=credentials.topic
    )
    options.update(overrides)
    client = aioapns.APNs(**options, use_sandbox=False, ssl_context=fake.ssl_context())
    client.pool.protocol_class = type(
        "FakeAPNsProtocol", (APNsTLSClientProtocol,), {"APNS_SERVER": fake.host, "APNS_PORT": fake.port}
    )
    return client


def alert(token=TOKEN, **fields) -> aioapns.NotificationRequest:
    return aioapns.NotificationRequest(
        device_token=token, message=ALERT, priority=10, push_type=PushType.ALERT, **fields
    )


async def send(fake, request, **overrides) -> NotificationResult:
    client = apns_client(fake, **overrides)
    try:
        return await asyncio.wait_for(client.send_notification(request), 5)
    finally:
        client.pool.close()


async def test_an_alert_push_is_accepted_and_recorded_with_its_headers_and_payload(apns_server):
    request = alert(collapse_key="incoming-message", time_to_live=3600)

    result = await send(apns_server, request)

    assert (result.status, result.notification_id) == ("200", request.notification_id)
    [push] = apns_server.wait_for(1, timeout=2)
    assert (push.token, push.topic, push.push_type, push.priority) == (TOKEN, apns_server.topic, "alert", 10)
    assert (push.collapse_id, push.apns_id, push.payload) == ("incoming-message", request.notification_id, ALERT)
    assert push.expiration is not None and push.headers["apns-expiration"] == str(push.expiration)
    assert push.headers[":path"] == f"/3/device/{TOKEN}"


async def test_a_background_push_goes_through_at_priority_5_only(apns_server):
    def background(priority):
        return aioapns.NotificationRequest(
            device_token=TOKEN, message={"aps": {"content-available": 1}}, priority=priority,
            push_type=PushType.BACKGROUND,
        )

    urgent = await send(apns_server, background(10))
    quiet = await send(apns_server, background(5))

    assert (urgent.status, urgent.description) == ("400", "BadPriority")
    assert quiet.status == "200"
    assert [push.priority for push in apns_server.pushes] == [5]


@pytest.mark.parametrize("credential", ["key", "key_id", "team_id"])
async def test_a_provider_token_not_from_the_configured_key_is_refused(apns_server, credential):
    stranger = make_apns_credentials()
    overrides = {"key": stranger.key_pem, "key_id": stranger.key_id, "team_id": stranger.team_id}

    result = await send(apns_server, alert(), **{credential: overrides[credential]})

    assert (result.status, result.description) == ("403", "InvalidProviderToken")
    assert apns_server.pushes == []


async def test_a_push_to_another_topic_is_refused(apns_server):
    result = await send(apns_server, alert(apns_topic="org.example.other"))

    assert (result.status, result.description) == ("400", "TopicDisallowed")
    assert apns_server.pushes == []


async def test_an_oversized_payload_is_refused(apns_server):
    request = alert()
    request.message = {"aps": {"alert": "x" * 4096}}

    result = await send(apns_server, request)

    assert (result.status, result.description) == ("413", "PayloadTooLarge")


async def test_an_unregistered_token_gets_410_with_the_time_it_was_unregistered(apns_server):
    apns_server.unregister(TOKEN, 1_700_000_000_000)
    apns_server.bad_device_token("cd" * 32)

    gone = await send(apns_server, alert(TOKEN))
    bad = await send(apns_server, alert("cd" * 32))

    assert (gone.status, gone.description, gone.timestamp) == ("410", "Unregistered", 1_700_000_000_000)
    assert (bad.status, bad.description) == ("400", "BadDeviceToken")
    assert apns_server.pushes == []


@pytest.mark.parametrize(
    "status, reason", [(429, "TooManyRequests"), (500, "InternalServerError"), (503, "ServiceUnavailable")]
)
async def test_a_failure_for_the_next_request_then_the_retry_is_accepted(apns_server, status, reason):
    apns_server.fail_next(1, status=status, reason=reason)
    client = apns_client(apns_server)
    try:
        first = await asyncio.wait_for(client.send_notification(alert()), 5)
        retry = await asyncio.wait_for(client.send_notification(alert()), 5)
    finally:
        client.pool.close()

    assert (first.status, first.description) == (str(status), reason)
    assert retry.status == "200"
    assert [attempt.status for attempt in apns_server.attempts] == [status, 200]
    assert len(apns_server.pushes) == 1


async def test_two_hundred_concurrent_pushes_share_one_connection_and_are_all_recorded(apns_server):
    tokens = [f"{n:064x}" for n in range(200)]
    client = apns_client(apns_server)
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(client.send_notification(alert(token)) for token in tokens)), 5
        )
    finally:
        client.pool.close()

    assert {result.status for result in results} == {"200"}
    pushes = apns_server.wait_for(200, timeout=2)
    assert sorted(push.token for push in pushes) == tokens
    assert {push.connection for push in pushes} == {1}
    assert apns_server.connections_accepted == 1


async def test_an_outage_refuses_connections_until_the_service_resumes(apns_server):
    apns_server.stop_accepting()
    with pytest.raises(ConnectionRefusedError), socket.create_connection((apns_server.host, apns_server.port), 1):
        pass

    apns_server.resume_accepting()
    result = await send(apns_server, alert())

    assert result.status == "200"


def test_wait_for_gives_up_after_its_timeout(apns_server):
    with pytest.raises(AssertionError, match="got 0 pushes"):
        apns_server.wait_for(1, timeout=0.05)
