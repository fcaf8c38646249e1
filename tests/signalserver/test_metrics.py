"""Metrics (docs/deployment.md, "Metrics"), scraped as the metrics port serves them
(`signalserver.metrics_export`) after real requests through the real routes and the real socket:
every counter that moves, moves by exactly what was done, and no label names anyone.

Counters are the process's own here (no multiprocess mode in the test process); each test compares
a scrape taken after what it does with one taken before. The port itself, several uvicorn workers
and a Celery worker: tests/test_metrics_processes.py."""

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.urls import resolve
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from messaging.models import QueuedMessage
from signalserver import metrics, tunnel
from signalserver.metrics_export import current_figures, exposition_registry
from signalserver.tasks import heartbeat_task
from tests.accounts.test_registration import NUMBER, register, registration_body, verification_session
from tests.factories import DeviceFactory, device_auth, override_limit
from tests.messaging.helpers import (
    message_list,
    next_message,
    next_request,
    parse_frame,
    request_frame,
    response_frame,
    socket_for,
)
from tests.messaging.test_sealed_sender import access_header, aci_bytes, devices_of, mrm_payload, put_mrm, xor_keys
from tests.servers import PROJECT

SEND_ROUTE = "/v1/messages/<str:destination>"
REQUESTS = "signalserver_request_duration_seconds_count"


def scrape() -> tuple[dict, str]:
    """{(sample name, sorted labels): value} of what the metrics port serves, and the text (after
    writing what the event loop observed: its writes are deferred, `metrics.deferred`)."""
    metrics.flush()
    text = generate_latest(exposition_registry()).decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples, text


def moved(before: dict, after: dict) -> dict:
    """The counts that changed: counters and histogram counts of ours, {(name, labels): delta}."""
    changed = {}
    for key, value in after.items():
        name = key[0]
        if name.startswith("signalserver_") and (name.endswith("_total") or name.endswith("_count")):
            delta = value - before.get(key, 0.0)
            if delta:
                changed[key] = delta
    return changed


def sample(name: str, **labels) -> tuple:
    return (name, tuple(sorted(labels.items())))


def request(transport: str, method: str, route: str, status: int) -> tuple:
    return sample(REQUESTS, transport=transport, method=method, route=route, status=str(status))


def sent(kind: str) -> tuple:
    return sample("signalserver_messages_sent_total", type=kind)


# Anything that identifies someone: a UUID (ACI, PNI, guid), a phone number, an IP address.
IDENTIFIER = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}|\+\d{6,}|\b\d{1,3}(\.\d{1,3}){3}\b")


def assert_no_identifier_in_labels(samples: dict, *known: str) -> None:
    for (name, labels) in samples:
        for label, value in labels:
            assert not IDENTIFIER.search(value), (name, label, value)
            for identifier in known:
                assert identifier not in value, (name, label, value)


@pytest.mark.django_db
def test_http_requests_are_counted_by_route_pattern_and_status_and_sends_by_type(client_for):
    alice, bob = DeviceFactory.create_batch(2)
    before, _ = scrape()

    sender = client_for(alice)
    assert sender.put(f"/v1/messages/{bob.account_id}", message_list([(1, bob.registration_id)]), format="json").status_code == 200
    assert sender.put(f"/v1/messages/{uuid.uuid4()}", message_list([(1, 1)]), format="json").status_code == 404
    assert sender.get("/v1/no/such/route").status_code == 404

    after, _ = scrape()
    assert moved(before, after) == {
        request("http", "PUT", SEND_ROUTE, 200): 1,
        request("http", "PUT", SEND_ROUTE, 404): 1,
        request("http", "GET", "unmatched", 404): 1,
        sent("identified"): 1,
    }
    assert_no_identifier_in_labels(after, str(alice.account_id), str(bob.account_id))


@pytest.mark.django_db
def test_sealed_and_multi_recipient_sends_listing_and_acknowledgements_count_by_type(client, client_for):
    recipient = DeviceFactory()
    DeviceFactory(account=recipient.account, device_id=2)
    other = DeviceFactory().account
    accounts = [recipient.account, other]
    before, _ = scrape()

    key = bytes(recipient.account.unidentified_access_key)
    sealed = message_list(devices_of(recipient.account), type=6, content=b"sealed")
    response = client.put(f"/v1/messages/{recipient.account_id}", sealed, format="json", HTTP_UNIDENTIFIED_ACCESS_KEY=access_header(key))
    assert response.status_code == 200
    payload = mrm_payload([(aci_bytes(account), devices_of(account), os.urandom(48)) for account in accounts])
    assert put_mrm(client, payload, xor_keys(accounts)).status_code == 200
    reader = client_for(recipient)
    listed = reader.get("/v1/messages").json()["messages"]
    assert len(listed) == 2  # the sealed one and the multi-recipient one, for device 1
    for message in listed:
        assert reader.delete(f"/v1/messages/uuid/{message['guid']}").status_code == 204

    after, text = scrape()
    assert moved(before, after) == {
        request("http", "PUT", SEND_ROUTE, 200): 1,
        request("http", "PUT", "/v1/messages/multi_recipient", 200): 1,
        request("http", "GET", "/v1/messages", 200): 1,
        request("http", "DELETE", "/v1/messages/uuid/<str:guid>", 204): 2,
        sent("sealed"): 2,
        sent("multi_recipient"): 3,
        # Once queued, a multi-recipient envelope is a sealed-sender envelope like any other.
        sample("signalserver_messages_delivered_total", type="sealed"): 2,
        sample("signalserver_messages_acknowledged_total", type="sealed"): 2,
    }
    assert_no_identifier_in_labels(after, str(recipient.account_id), str(other.aci), *(m["guid"] for m in listed))
    # What is left queued: the sealed and multi-recipient copies of device 2, and other's one.
    assert after[sample("signalserver_queue_depth")] == QueuedMessage.objects.count() == 3


@pytest.mark.django_db(transaction=True)
async def test_a_socket_delivery_its_acknowledgement_the_receipt_and_a_tunnelled_send_are_counted():
    alice, bob = await sync_to_async(DeviceFactory.create_batch)(2)
    before, _ = await sync_to_async(scrape)()

    ws = socket_for(bob)
    assert (await ws.connect())[0]
    assert (await next_request(ws)).path == "/api/v1/queue/empty"
    during, _ = await sync_to_async(scrape)()
    chat_sockets = sample("signalserver_open_sockets", route="/v1/websocket/")
    assert during[chat_sockets] == before[chat_sockets] + 1

    sender = APIClient()
    sender.credentials(HTTP_AUTHORIZATION=device_auth(alice))
    response = await sync_to_async(sender.put)(f"/v1/messages/{bob.account_id}", message_list([(1, bob.registration_id)]), format="json")
    assert response.status_code == 200
    request_id, envelope = await next_message(ws)
    await ws.send_to(bytes_data=response_frame(request_id))
    # The acknowledgement is deleted in a batch of the event loop, and the receipt queued with it.
    deadline = time.monotonic() + 5
    while await sync_to_async(QueuedMessage.objects.filter(device=bob).exists)() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)

    body = json.dumps(message_list([(1, alice.registration_id)], content=b"back")).encode()
    frame = request_frame("PUT", f"/v1/messages/{alice.account_id}", body=body, request_id=7, headers=["Content-Type:application/json"])
    await ws.send_to(bytes_data=frame)
    answer = None
    while answer is None:  # the answer to request 7
        frame = parse_frame(await ws.receive_from(timeout=5))
        if frame.HasField("response") and frame.response.id == 7:
            answer = frame.response
    assert answer.status == 200
    await ws.disconnect()

    after, _ = await sync_to_async(scrape)()
    assert moved(before, after) == {
        request("http", "PUT", SEND_ROUTE, 200): 1,
        request("websocket", "PUT", SEND_ROUTE, 200): 1,
        sent("identified"): 2,
        sent("receipt"): 1,  # to alice's one device, for bob's acknowledgement
        sample("signalserver_messages_delivered_total", type="identified"): 1,
        sample("signalserver_messages_acknowledged_total", type="identified"): 1,
        sample("signalserver_message_delivery_seconds_count"): 1,
    }
    assert after[chat_sockets] == before[chat_sockets]
    assert_no_identifier_in_labels(after, str(alice.account_id), str(bob.account_id), str(uuid.UUID(bytes=envelope.server_guid)))


@pytest.mark.django_db
def test_rate_limit_refusals_are_counted_by_limiter(client):
    device = DeviceFactory()
    override_limit("checkAccountExistence", 1, 3600)
    before, _ = scrape()

    assert client.head(f"/v1/accounts/account/{device.account_id}").status_code == 200
    assert client.head(f"/v1/accounts/account/{device.account_id}").status_code == 429

    after, _ = scrape()
    route = "/v1/accounts/account/<str:service_id>"
    assert moved(before, after) == {
        request("http", "HEAD", route, 200): 1,
        request("http", "HEAD", route, 429): 1,
        sample("signalserver_rate_limit_refusals_total", limiter="checkAccountExistence"): 1,
    }


@pytest.mark.django_db
def test_registrations_count_new_accounts_and_reregistrations():
    before, _ = scrape()

    assert register(NUMBER, registration_body(sessionId=verification_session(NUMBER))).status_code == 200
    assert register(NUMBER, registration_body(sessionId=verification_session(NUMBER))).status_code == 200

    after, _ = scrape()
    assert moved(before, after) == {
        request("http", "POST", "/v1/registration", 200): 2,
        sample("signalserver_registrations_total", kind="new"): 1,
        sample("signalserver_registrations_total", kind="reregistration"): 1,
    }
    assert_no_identifier_in_labels(after, NUMBER)


@pytest.mark.django_db
def test_the_queue_depth_and_oldest_age_are_read_from_the_table(client_for):
    assert current_figures()["queue_depth"] == 0 and current_figures()["queue_oldest_age_seconds"] == 0
    alice, bob = DeviceFactory.create_batch(2)
    for _ in range(3):
        client_for(alice).put(f"/v1/messages/{bob.account_id}", message_list([(1, bob.registration_id)]), format="json")

    figures = current_figures()
    assert figures["queue_depth"] == 3
    oldest_hour = QueuedMessage.objects.order_by("queued_hour").values_list("queued_hour", flat=True).first()
    # Kept to the hour: the age counts from the start of the row's hour.
    assert figures["queue_oldest_age_seconds"] == pytest.approx(time.time() - oldest_hour * 3600, abs=5)
    assert 0 <= figures["queue_oldest_age_seconds"] <= 3600 + 5


@pytest.mark.django_db
def test_task_outcomes_and_the_heartbeat_are_counted():
    before, _ = scrape()
    started = time.time()

    heartbeat_task.delay()  # eager in the tests: run here, never published (so no lag)

    after, _ = scrape()
    assert moved(before, after) == {
        sample("signalserver_celery_tasks_total", task="signalserver.tasks.heartbeat_task", outcome="success"): 1
    }
    assert after[sample("signalserver_celery_heartbeat_timestamp_seconds")] >= started
    assert current_figures()["celery_heartbeat"] >= started


@pytest.mark.django_db
def test_current_figures_sum_what_the_port_serves(client_for):
    alice, bob = DeviceFactory.create_batch(2)
    before = current_figures()

    client_for(alice).put(f"/v1/messages/{bob.account_id}", message_list([(1, bob.registration_id)]), format="json")
    client_for(alice).get("/v1/no/such/route")

    after = current_figures()
    assert after["messages_sent"]["identified"] == before["messages_sent"].get("identified", 0) + 1
    assert after["requests"]["http"] == before["requests"].get("http", 0) + 2
    assert after["request_errors"].get("http", 0) == before["request_errors"].get("http", 0)  # 404 is no error
    assert after["queue_depth"] == 1
    assert set(after) >= {"open_sockets", "registrations", "rate_limit_refusals", "push_notifications", "celery_tasks"}


def test_hot_routes_are_labelled_as_django_writes_the_route_of_the_same_path():
    examples = {"destination": str(uuid.uuid4()), "service_id": str(uuid.uuid4()), "version": "abc"}
    for verb, pattern, _handler, label in tunnel._routes:
        path = re.sub(r"<str:(\w+)>", lambda group: examples.get(group[1], "1"), label)
        assert pattern.fullmatch(path), (label, pattern)
        assert "/" + resolve(path).route == label, verb


async def test_observations_deferred_on_the_event_loop_are_written_as_direct_ones_would_be():
    registry = CollectorRegistry()
    direct = Histogram("direct_seconds", "d", buckets=metrics.REQUEST_BUCKETS, registry=registry)
    later = Histogram("later_seconds", "d", buckets=metrics.REQUEST_BUCKETS, registry=registry)
    for value in (0.0005, 0.001, 0.003, 0.003, 0.2, 7.0, 20.0):
        direct.observe(value)
        metrics.deferred.observe(later, metrics.REQUEST_BUCKETS, value)
    assert registry.get_sample_value("later_seconds_count") == 0  # nothing written yet

    metrics.flush()
    samples = {family.name: family.samples for family in registry.collect()}
    assert [(s.name.replace("direct", "later"), s.labels, s.value) for s in samples["direct_seconds"]] == [
        (s.name, s.labels, s.value) for s in samples["later_seconds"]
    ]


def test_a_start_gets_its_own_metrics_directory_and_removes_those_of_starts_no_longer_running(tmp_path):
    """METRICS_DIR: a directory per start of a server, named by its process and start time; the
    directories of starts that no longer run go (stale counts), those of running ones stay."""
    running = tmp_path / f"{os.getpid()}-{metrics._start_time(os.getpid())}"  # this test process
    ended = tmp_path / "999999999-12345"  # no such process
    reused = tmp_path / f"{os.getpid()}-1"  # this pid, but another start: a process since gone
    for directory in (running, ended, reused):
        directory.mkdir()
        (directory / "counter_1.db").write_bytes(b"")
    probe = "import os, signalserver.metrics; print(os.environ['PROMETHEUS_MULTIPROC_DIR'])"
    env = {**os.environ, "METRICS_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "signalserver.settings"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    done = subprocess.run([sys.executable, "-c", probe], env=env, cwd=PROJECT, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    own = Path(done.stdout.strip())
    assert own.parent == tmp_path and own.name.startswith(f"{own.name.split('-')[0]}-")
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([running.name, own.name])
    assert list(own.glob("counter_*.db"))  # its values went there
