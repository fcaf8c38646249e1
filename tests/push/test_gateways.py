"""The push gateways against local servers that speak APNs (HTTP/2 over TLS, token auth) and FCM
HTTP v1 with Google's OAuth (tests/fakes): what goes over the wire, and what each answer means."""

import asyncio
import json

import pytest

from push import gateways, payloads
from push.gateways import ApnsGateway, FcmGateway
from push.payloads import Notification
from tests.fakes.apns import apns_credentials, apns_server  # noqa: F401 (fixtures)
from tests.fakes.fcm import fcm_server  # noqa: F401 (fixture)

# Signal's clients register FCM registration tokens; firebase-admin now prefers installation ids.
pytestmark = pytest.mark.filterwarnings("ignore:Message.token is deprecated:DeprecationWarning")

TOKEN = "a1" * 32


@pytest.fixture
def apns(apns_server):  # noqa: F811
    creds = apns_server.credentials
    return ApnsGateway(
        key=creds.key_pem,
        key_id=creds.key_id,
        team_id=creds.team_id,
        topic=creds.topic,
        server=apns_server.server,
        ca_file=apns_server.ca_file,
    )


async def test_an_urgent_new_message_reaches_apns_as_an_alert_with_signals_payload(apns, apns_server):  # noqa: F811
    outcome = await apns.send(TOKEN, Notification(payloads.NEW_MESSAGE, urgent=True))

    assert outcome == gateways.PushOutcome(gateways.SENT)
    (push,) = apns_server.wait_for(1)
    assert (push.token, push.topic, push.push_type, push.priority) == (TOKEN, apns_server.credentials.topic, "alert", 10)
    assert push.collapse_id == "incoming-message"
    assert push.payload == {"aps": {"mutable-content": 1, "alert": {"loc-key": "APN_Message"}}}


async def test_a_rate_limit_challenge_reaches_apns_as_a_background_push(apns, apns_server):  # noqa: F811
    challenge = "0f" * 16
    assert (await apns.send(TOKEN, Notification(payloads.RATE_LIMIT_CHALLENGE, value=challenge))).status == gateways.SENT
    (push,) = apns_server.wait_for(1)
    assert (push.push_type, push.priority) == ("background", 5)
    assert push.payload == {"aps": {"content-available": 1}, "rateLimitChallenge": challenge}


async def test_an_unregistered_apns_token_is_reported_invalid_with_apples_time(apns, apns_server):  # noqa: F811
    apns_server.unregister(TOKEN, timestamp_ms=1_700_000_000_000)
    outcome = await apns.send(TOKEN, Notification(payloads.NEW_MESSAGE))
    assert (outcome.status, outcome.reason, outcome.invalidated_at_ms) == (gateways.INVALID_TOKEN, "Unregistered", 1_700_000_000_000)


async def test_a_bad_apns_device_token_is_reported_invalid(apns, apns_server):  # noqa: F811
    apns_server.bad_device_token(TOKEN)
    assert (await apns.send(TOKEN, Notification(payloads.NEW_MESSAGE))).status == gateways.INVALID_TOKEN


@pytest.mark.parametrize("status,reason", [(429, "TooManyRequests"), (503, "ServiceUnavailable"), (500, "InternalServerError")])
async def test_apns_throttling_and_server_errors_are_worth_retrying(apns, apns_server, status, reason):  # noqa: F811
    apns_server.fail_next(1, status=status, reason=reason)
    assert (await apns.send(TOKEN, Notification(payloads.NEW_MESSAGE))).status == gateways.RETRY
    assert (await apns.send(TOKEN, Notification(payloads.NEW_MESSAGE))).status == gateways.SENT


async def test_a_refusal_that_retrying_cannot_fix_is_a_failure(apns_server):  # noqa: F811
    creds = apns_server.credentials
    wrong_topic = ApnsGateway(
        key=creds.key_pem, key_id=creds.key_id, team_id=creds.team_id, topic="org.example.other",
        server=apns_server.server, ca_file=apns_server.ca_file,
    )
    outcome = await wrong_topic.send(TOKEN, Notification(payloads.NEW_MESSAGE))
    assert (outcome.status, outcome.reason) == (gateways.FAILED, "TopicDisallowed")


async def test_many_apns_pushes_share_a_few_connections(apns, apns_server):  # noqa: F811
    tokens = [f"{n:064x}" for n in range(300)]
    outcomes = await asyncio.gather(*(apns.send(token, Notification(payloads.NEW_MESSAGE)) for token in tokens))
    assert {outcome.status for outcome in outcomes} == {gateways.SENT}
    assert sorted(push.token for push in apns_server.wait_for(300)) == sorted(tokens)
    assert apns_server.connections_accepted <= 4  # the gateway's max_connections


@pytest.fixture
async def fcm(fcm_server, tmp_path):  # noqa: F811
    gateway = FcmGateway(
        credentials_file=str(fcm_server.write_service_account(tmp_path / "service-account.json")), api_url=fcm_server.url
    )
    yield gateway
    await gateway.aclose()


async def test_an_urgent_new_message_reaches_fcm_as_a_high_priority_data_message(fcm, fcm_server):  # noqa: F811
    assert await fcm.send(TOKEN, Notification(payloads.NEW_MESSAGE, urgent=True)) == gateways.PushOutcome(gateways.SENT)
    (message,) = fcm_server.wait_for(1)
    assert (message.token, message.data, message.priority, message.ttl) == (TOKEN, {"newMessageAlert": ""}, "high", "2419200s")


async def test_a_registration_challenge_reaches_fcm(fcm, fcm_server):  # noqa: F811
    challenge = "1e" * 16
    assert (await fcm.send(TOKEN, Notification(payloads.CHALLENGE, value=challenge))).status == gateways.SENT
    assert fcm_server.wait_for(1)[0].data == {"challenge": challenge}


async def test_an_unregistered_fcm_token_is_reported_invalid(fcm, fcm_server):  # noqa: F811
    fcm_server.unregister(TOKEN)
    outcome = await fcm.send(TOKEN, Notification(payloads.NEW_MESSAGE))
    assert (outcome.status, outcome.reason) == (gateways.INVALID_TOKEN, "UNREGISTERED")


async def test_fcm_quota_exhaustion_is_worth_retrying(fcm, fcm_server):  # noqa: F811
    fcm_server.fail_next(1, status=429, retry_after=None)
    assert (await fcm.send(TOKEN, Notification(payloads.NEW_MESSAGE))).status == gateways.RETRY
    assert (await fcm.send(TOKEN, Notification(payloads.NEW_MESSAGE))).status == gateways.SENT


async def test_many_fcm_pushes_reuse_one_oauth_token(fcm, fcm_server):  # noqa: F811
    await fcm.send("warm-up", Notification(payloads.NEW_MESSAGE))
    tokens = [f"token-{n}" for n in range(100)]
    outcomes = await asyncio.gather(*(fcm.send(token, Notification(payloads.NEW_MESSAGE)) for token in tokens))
    assert {outcome.status for outcome in outcomes} == {gateways.SENT}
    assert len(fcm_server.wait_for(101)) == 101
    assert fcm_server.token_requests == 1


async def test_an_fcm_access_token_refused_by_fcm_is_renewed_once(fcm, fcm_server):  # noqa: F811
    assert (await fcm.send(TOKEN, Notification(payloads.NEW_MESSAGE))).status == gateways.SENT
    fcm_server.revoke_tokens()
    assert (await fcm.send(TOKEN, Notification(payloads.NEW_MESSAGE))).status == gateways.SENT
    assert fcm_server.token_requests == 2
    assert len(fcm_server.wait_for(2)) == 2


async def test_fcm_unavailable_is_worth_retrying_after_the_time_it_asks(fcm, fcm_server):  # noqa: F811
    fcm_server.fail_next(1, status=503, retry_after=7)
    outcome = await fcm.send(TOKEN, Notification(payloads.NEW_MESSAGE))
    assert (outcome.status, outcome.retry_after) == (gateways.RETRY, 7.0)


async def test_an_unreachable_oauth_endpoint_is_worth_retrying(fcm_server, tmp_path):  # noqa: F811
    from tests.fakes.http import closed_port_url

    account = fcm_server.service_account() | {"token_uri": closed_port_url() + "/token"}
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(account))
    gateway = FcmGateway(credentials_file=str(path), api_url=fcm_server.url)
    try:
        assert (await gateway.send(TOKEN, Notification(payloads.NEW_MESSAGE))).status == gateways.RETRY
    finally:
        await gateway.aclose()
    assert fcm_server.messages == []
