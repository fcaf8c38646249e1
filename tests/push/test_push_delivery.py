"""New-message pushes end to end: a send over HTTP to a device with no socket open reaches the local
APNs or FCM (tests/fakes) through the real web process and a real Celery worker on Redis."""

import asyncio
import subprocess
import sys
import tempfile
import time

import httpx
import pytest
from asgiref.sync import sync_to_async

from accounts.models import Device
from tests.factories import DeviceFactory, device_auth, override_limit
from tests.fakes.apns import apns_credentials, apns_server  # noqa: F401 (fixtures)
from tests.fakes.fcm import fcm_server  # noqa: F401 (fixture)
from tests.live_clients import ChatSocket
from tests.messaging.helpers import message_list
from tests.messaging.test_end_to_end import send_over_http
from tests.servers import PROJECT, live_server_process, server_environment

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "c3" * 32
WAIT = 10.0


@pytest.fixture
def push_environment(apns_server, tmp_path):  # noqa: F811
    creds = apns_server.credentials
    return {
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "APNS_KEY_FILE": str(creds.write_p8(tmp_path)),
        "APNS_KEY_ID": creds.key_id,
        "APNS_TEAM_ID": creds.team_id,
        "APNS_TOPIC": creds.topic,
        "APNS_SERVER": apns_server.server,
        "APNS_CA_FILE": str(apns_server.ca_file),
    }


def start_worker(environment: dict, output=None) -> subprocess.Popen:
    """A Celery worker of the project, on the tests' Redis, with these settings; its output goes
    to `output` (a file) when given."""
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "signalserver", "worker", "--pool", "solo", "--loglevel", "WARNING",
         "--without-mingle", "--without-gossip", "--without-heartbeat"],
        cwd=PROJECT, env=server_environment(**environment),
        # Its output goes to a file: a pipe nobody reads would stall it once full.
        stdin=subprocess.DEVNULL, stdout=output or tempfile.TemporaryFile(), stderr=subprocess.STDOUT,
    )


def stop_worker(worker: subprocess.Popen) -> None:
    worker.terminate()
    try:
        worker.wait(timeout=10)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


@pytest.fixture
def celery_worker_process(push_environment):
    worker = start_worker(push_environment)
    yield worker
    stop_worker(worker)


def until(condition, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


async def test_an_offline_device_gets_one_urgent_push_and_a_connected_one_none(
    apns_server, push_environment, celery_worker_process  # noqa: F811
):
    alice = await sync_to_async(DeviceFactory)()
    bob = await sync_to_async(DeviceFactory)(apn_id=TOKEN, fetches_messages=False)
    with live_server_process(**push_environment) as server:
        await send_over_http(server.url, device_auth(alice), bob.account_id, bob.registration_id, b"hello", 1)

        (push,) = apns_server.wait_for(1, timeout=WAIT)
        assert (push.token, push.push_type, push.priority, push.collapse_id) == (TOKEN, "alert", 10, "incoming-message")
        assert push.payload == {"aps": {"mutable-content": 1, "alert": {"loc-key": "APN_Message"}}}

        async with await ChatSocket.connect(server.ws_url, device_auth(bob)) as socket:
            await socket.next_message()  # the queued message: the socket is Bob's delivery socket
            await send_over_http(server.url, device_auth(alice), bob.account_id, bob.registration_id, b"again", 2)
            await socket.next_message()
        await asyncio.sleep(0.5)
        assert len(apns_server.pushes) == 1  # none while connected


async def test_a_token_apns_calls_unregistered_is_cleared(apns_server, push_environment, celery_worker_process):  # noqa: F811
    alice = await sync_to_async(DeviceFactory)()
    bob = await sync_to_async(DeviceFactory)(apn_id=TOKEN, fetches_messages=False)
    apns_server.unregister(TOKEN, timestamp_ms=int(time.time() * 1000) + 60_000)
    with live_server_process(**push_environment) as server:
        await send_over_http(server.url, device_auth(alice), bob.account_id, bob.registration_id, b"hello", 1)
        assert await sync_to_async(until)(lambda: Device.objects.get(pk=bob.pk).apn_id == "")


async def close_with_a_message_unacknowledged(server, alice, bob) -> float:
    """Bob's socket gets a message from Alice and closes without acknowledging it; when it closed."""
    async with await ChatSocket.connect(server.ws_url, device_auth(bob)) as socket:
        await socket.backlog()
        await send_over_http(server.url, device_auth(alice), bob.account_id, bob.registration_id, b"hi", 1)
        await socket.next_message()
    return time.monotonic()


@pytest.fixture
async def alice_and_bob():
    alice = await sync_to_async(DeviceFactory)()
    bob = await sync_to_async(DeviceFactory)(apn_id=TOKEN, fetches_messages=False)
    return alice, bob


async def test_a_socket_closed_with_messages_unacknowledged_gets_its_device_pushed_a_little_later(
    apns_server, push_environment, celery_worker_process, alice_and_bob  # noqa: F811
):
    with live_server_process(**push_environment, PUSH_AFTER_CLOSE_SECONDS="1") as server:
        closed_at = await close_with_a_message_unacknowledged(server, *alice_and_bob)

        (push,) = apns_server.wait_for(1, timeout=WAIT)
        assert push.token == TOKEN and push.received_at - closed_at >= 0.9


async def test_reconnecting_within_the_delay_cancels_the_push(
    apns_server, push_environment, celery_worker_process, alice_and_bob  # noqa: F811
):
    bob = alice_and_bob[1]
    with live_server_process(**push_environment, PUSH_AFTER_CLOSE_SECONDS="1") as server:
        await close_with_a_message_unacknowledged(server, *alice_and_bob)
        async with await ChatSocket.connect(server.ws_url, device_auth(bob)) as again:
            redelivered = await again.next_message()
            await asyncio.sleep(2.5)  # past the delay, the device connected
            assert apns_server.pushes == []
            await again.ack(redelivered)


async def test_a_full_page_fetched_over_rest_gets_the_device_pushed_a_little_later_if_it_stops_fetching(
    apns_server, push_environment, celery_worker_process, alice_and_bob  # noqa: F811
):
    alice, bob = alice_and_bob
    await sync_to_async(override_limit)("messages", 200, 1)
    body = message_list([(1, bob.registration_id)], urgent=False)
    with live_server_process(**push_environment, PUSH_AFTER_CLOSE_SECONDS="1") as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            for _ in range(101):  # non-urgent: one push for the lot (the first opens the window)
                response = await http.put(f"/v1/messages/{bob.account_id}", json=body, headers={"Authorization": device_auth(alice)})
                assert response.status_code == 200
            apns_server.wait_for(1, timeout=WAIT)
            await asyncio.sleep(0.5)  # what the sends caused has arrived
            before = apns_server.pushes
            assert {push.push_type for push in before} == {"background"}  # non-urgent: no alert
            page = await http.get("/v1/messages", headers={"Authorization": device_auth(bob)})
            fetched_at = time.monotonic()
            assert page.json()["more"] is True

            reminder = apns_server.wait_for(len(before) + 1, timeout=WAIT)[-1]
            assert (reminder.token, reminder.push_type) == (TOKEN, "alert")
            assert reminder.received_at - fetched_at >= 0.9


async def test_a_push_the_service_could_not_take_is_tried_again(
    apns_server, push_environment, celery_worker_process, alice_and_bob  # noqa: F811
):
    alice, bob = alice_and_bob
    apns_server.fail_next(1, status=503, reason="ServiceUnavailable")
    with live_server_process(**push_environment) as server:
        await send_over_http(server.url, device_auth(alice), bob.account_id, bob.registration_id, b"hello", 1)

        (push,) = apns_server.wait_for(1, timeout=WAIT)  # the retry, 2 s after the 503
    assert push.token == TOKEN
    assert [attempt.status for attempt in apns_server.attempts] == [503, 200]


async def test_a_push_gateway_outage_neither_slows_nor_fails_a_send(
    apns_server, push_environment, celery_worker_process, alice_and_bob  # noqa: F811
):
    alice, bob = alice_and_bob
    apns_server.stop_accepting()
    with live_server_process(**push_environment) as server:
        started = time.monotonic()
        await send_over_http(server.url, device_auth(alice), bob.account_id, bob.registration_id, b"hello", 1)
        assert time.monotonic() - started < 1.0


@pytest.mark.filterwarnings("ignore:Message.token is deprecated:DeprecationWarning")
async def test_an_offline_android_device_gets_one_high_priority_fcm_push(fcm_server, tmp_path):  # noqa: F811
    environment = {
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "FCM_CREDENTIALS_FILE": str(fcm_server.write_service_account(tmp_path / "service-account.json")),
        "FCM_API_URL": fcm_server.url,
    }
    alice = await sync_to_async(DeviceFactory)()
    bob = await sync_to_async(DeviceFactory)(gcm_id="fcm-" + TOKEN, fetches_messages=False)
    worker = start_worker(environment)
    try:
        with live_server_process(**environment) as server:
            await send_over_http(server.url, device_auth(alice), bob.account_id, bob.registration_id, b"hello", 1)
            (message,) = fcm_server.wait_for(1, timeout=WAIT)
    finally:
        stop_worker(worker)
    assert (message.token, message.data, message.priority) == ("fcm-" + TOKEN, {"newMessageAlert": ""}, "high")
