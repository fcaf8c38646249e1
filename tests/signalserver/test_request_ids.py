"""Request ids (docs/architecture.md, "Request ids"): every HTTP request, socket and tunnelled
request has one, returned to the client and written on every log line it causes, Celery tasks it
queues included; work serving many requests at once (batches) logs with none.

HTTP goes through the real ASGI application (httpx's ASGI transport), sockets through the real
WebSocket route, Celery eagerly in this process; the last test runs a real server and worker."""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
import time

import httpx
import pytest
from asgiref.sync import sync_to_async

from signalserver import request_ids
from signalserver.asgi import application
from signalserver.batching import loop_batcher
from signalserver.db import in_db_thread
from tests.factories import DeviceFactory, device_auth
from tests.fakes.apns import apns_credentials, apns_server, apns_settings  # noqa: F401 (fixtures)
from tests.live_clients import ChatSocket
from tests.messaging.helpers import message_list, next_message, parse_frame, request_frame, socket_for
from tests.push.test_push_delivery import push_environment, start_worker, stop_worker  # noqa: F401 (fixture)
from tests.servers import start_servers
from tests.signalserver.test_log_privacy import captured_log  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db(transaction=True)

GENERATED = re.compile(r"[0-9a-f]{16}")
NGINX_ID = "5d41402abc4b2a76b9719d911017c592"  # what nginx's $request_id looks like
TOKEN = "e5" * 32
NUMBER = "+14155550142"


@pytest.fixture
async def http():
    transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def log_lines(captured) -> list[dict]:
    return [json.loads(line) for line in captured.getvalue().splitlines() if line.strip()]


def lines_saying(lines: list[dict], msg: str) -> list[dict]:
    return [line for line in lines if line["msg"] == msg]


def header_value(headers, name: str) -> str:
    """A header of a WebSocketResponseMessage (`Name:value` strings)."""
    (value,) = [line.split(":", 1)[1] for line in headers if line.split(":", 1)[0].lower() == name.lower()]
    return value


def challenge_body() -> dict:
    return {"number": NUMBER, "pushToken": TOKEN, "pushTokenType": "apn"}


# --- HTTP ---------------------------------------------------------------------------------------


async def test_every_http_answer_carries_a_fresh_request_id(http):
    answers = [
        await http.get("/health/live"),
        await http.get("/v1/accounts/whoami"),  # 401 from DRF
        await http.get("/v1/no-such-route"),  # 404 from Django
        await http.get("/v1/accounts/whoami"),
    ]
    ids = [answer.headers["X-Request-Id"] for answer in answers]
    assert all(GENERATED.fullmatch(value) for value in ids), ids
    assert len(set(ids)) == len(ids)
    assert request_ids.current.get() is None  # nothing leaks into the caller's context


async def test_the_request_log_line_carries_the_id_the_answer_returns(http, captured_log):  # noqa: F811
    answer = await http.get("/v1/accounts/whoami")
    (line,) = lines_saying(log_lines(captured_log), "request")
    assert (line["route"], line["status"], line["request_id"]) == ("/v1/accounts/whoami", 401, answer.headers["X-Request-Id"])


async def test_a_trusted_proxys_request_id_is_used(http, settings, captured_log):  # noqa: F811
    settings.TRUSTED_PROXY_HEADER = "X-Forwarded-For"
    answer = await http.get("/v1/accounts/whoami", headers={"X-Request-Id": NGINX_ID, "X-Forwarded-For": "203.0.113.9"})
    assert answer.headers["X-Request-Id"] == NGINX_ID
    (line,) = lines_saying(log_lines(captured_log), "request")
    assert line["request_id"] == NGINX_ID  # kept whole: not mistaken for a hex secret by the filter


@pytest.mark.parametrize("sent", [NUMBER, "14155550142 and more", "x" * 65, ""], ids=["number", "spaces", "long", "empty"])
async def test_a_trusted_proxys_malformed_request_id_is_replaced(http, settings, captured_log, sent):  # noqa: F811
    settings.TRUSTED_PROXY_HEADER = "X-Forwarded-For"
    answer = await http.get("/v1/accounts/whoami", headers={"X-Request-Id": sent})
    assert GENERATED.fullmatch(answer.headers["X-Request-Id"])
    output = captured_log.getvalue()
    assert '"route": "/v1/accounts/whoami"' in output and (not sent or sent not in output)


async def test_a_request_id_sent_without_a_trusted_proxy_is_ignored(http, settings, captured_log):  # noqa: F811
    settings.TRUSTED_PROXY_HEADER = ""
    answer = await http.get("/v1/accounts/whoami", headers={"X-Request-Id": NGINX_ID})
    assert GENERATED.fullmatch(answer.headers["X-Request-Id"])
    assert NGINX_ID not in captured_log.getvalue()


async def test_every_line_of_a_request_and_of_the_task_it_queues_carries_its_id(http, apns_settings, captured_log):  # noqa: F811
    apns_settings.fail_next(1, 400, "BadTopic")  # the push task logs the refusal
    answer = await http.post("/v1/verification/session", json=challenge_body())
    assert answer.status_code == 200, answer.text

    lines = log_lines(captured_log)
    assert len(lines_saying(lines, "push challenge refused")) == 1  # logged by the (eager) Celery task
    assert len(lines_saying(lines, "request")) == 1
    assert {line.get("request_id") for line in lines} == {answer.headers["X-Request-Id"]}, lines


async def test_a_push_queued_for_the_sends_of_several_requests_carries_no_single_id(http, apns_settings, captured_log):  # noqa: F811
    # Committed sends are handed to sockets and pushes together, whichever requests made them
    # (messaging.notify): one push task may serve many requests, and so carries none of their ids.
    sender, recipient = await sync_to_async(DeviceFactory.create)(), await sync_to_async(DeviceFactory.create)(apn_id=TOKEN)
    apns_settings.fail_next(1, 400, "BadTopic")
    answer = await http.put(
        f"/v1/messages/{recipient.account_id}",
        json=message_list([(1, recipient.registration_id)]),
        headers={"Authorization": device_auth(sender)},
    )
    assert answer.status_code == 200, answer.text

    deadline = time.monotonic() + 5
    while not lines_saying(log_lines(captured_log), "push refused") and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    lines = log_lines(captured_log)
    (refused,) = lines_saying(lines, "push refused")
    assert "request_id" not in refused
    assert lines_saying(lines, "request")[0]["request_id"] == answer.headers["X-Request-Id"]


# --- Sockets ------------------------------------------------------------------------------------


async def test_a_tunnelled_request_answers_with_its_own_id_and_logs_under_it(apns_settings, captured_log):  # noqa: F811
    apns_settings.fail_next(1, 400, "BadTopic")
    ws = socket_for(None)
    assert (await ws.connect())[0]
    try:
        await ws.send_to(bytes_data=request_frame("GET", "/v1/keepalive", request_id=1))
        first = parse_frame(await ws.receive_from(timeout=5)).response
        body = json.dumps(challenge_body()).encode()
        await ws.send_to(bytes_data=request_frame("POST", "/v1/verification/session", body=body, request_id=2, headers=["Content-Type:application/json"]))
        second = parse_frame(await ws.receive_from(timeout=5)).response
    finally:
        await ws.disconnect()
    assert second.status == 200, second.body

    first_id, second_id = header_value(first.headers, "X-Request-Id"), header_value(second.headers, "X-Request-Id")
    socket_id = first_id.split(".")[0]
    assert GENERATED.fullmatch(socket_id)
    assert (first_id, second_id) == (f"{socket_id}.1", f"{socket_id}.2")  # the socket's id, then the request's number
    (refused,) = lines_saying(log_lines(captured_log), "push challenge refused")
    assert refused["request_id"] == second_id


async def test_the_sockets_own_lines_carry_its_id(http, apns_settings, captured_log):  # noqa: F811
    # Closed with a delivery unacknowledged, the socket queues a push (eager here); the push
    # service refuses it, and that line is the socket's.
    sender, recipient = await sync_to_async(DeviceFactory.create)(), await sync_to_async(DeviceFactory.create)(apn_id=TOKEN)
    ws = socket_for(recipient)
    assert (await ws.connect())[0]
    assert (await next_request_path(ws)) == "/api/v1/queue/empty"
    await ws.send_to(bytes_data=request_frame("GET", "/v1/keepalive", request_id=1))
    socket_id = header_value(parse_frame(await ws.receive_from(timeout=5)).response.headers, "X-Request-Id").split(".")[0]
    sent = await http.put(
        f"/v1/messages/{recipient.account_id}",
        json=message_list([(1, recipient.registration_id)]),
        headers={"Authorization": device_auth(sender)},
    )
    assert sent.status_code == 200, sent.text
    await next_message(ws, timeout=5)  # not acknowledged
    apns_settings.fail_next(1, 400, "BadTopic")
    await ws.disconnect(timeout=10)  # returns once the socket's close has run, push included

    (refused,) = lines_saying(log_lines(captured_log), "push refused")
    assert refused["request_id"] == socket_id


async def next_request_path(ws) -> str:
    return parse_frame(await ws.receive_from(timeout=5)).request.path


# --- Thread hops and batches --------------------------------------------------------------------


async def test_the_id_reaches_database_threads_and_a_batch_runs_without_one():
    token = request_ids.current.set("a-request")
    try:
        assert await in_db_thread(request_ids.current.get)() == "a-request"
        seen = []

        def handle(items):
            seen.append(request_ids.current.get())
            return items

        assert await loop_batcher(handle, 10).submit("item") == "item"
        assert seen == [None]  # not the id of the request that happened to start the batch
        assert request_ids.current.get() == "a-request"  # and the request keeps its own
    finally:
        request_ids.current.reset(token)


# --- A real server and a real Celery worker -----------------------------------------------------


async def test_the_procfile_server_and_a_worker_log_a_request_under_its_proxys_id(apns_server, push_environment):  # noqa: F811
    environment = {**push_environment, "LOG_LEVEL": "INFO", "TRUSTED_PROXY_HEADER": "X-Forwarded-For"}
    apns_server.fail_next(1, 400, "BadTopic")
    with tempfile.NamedTemporaryFile(prefix="worker-") as worker_log:
        worker = start_worker(environment, output=worker_log)
        (server,) = start_servers(1, procfile=True, **environment)  # uvicorn, as in production
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                answer = await client.post("/v1/verification/session", json=challenge_body(), headers={"X-Request-Id": NGINX_ID})
            assert answer.status_code == 200, answer.text
            assert answer.headers["X-Request-Id"] == NGINX_ID

            async with await ChatSocket.connect(server.ws_url, headers={"X-Request-Id": "edge-7"}) as socket:
                assert socket.ws.response.headers["X-Request-Id"] == "edge-7"
                keepalive = await socket.request("GET", "/v1/keepalive")
                assert header_value(keepalive.headers, "X-Request-Id") == "edge-7.1"

            worker_lines = wait_for_line(worker_log.name, "push challenge refused")
            server_lines = [json.loads(line) for line in server.output(20_000).splitlines() if line.startswith("{")]
        finally:
            server.stop()
            stop_worker(worker)
    (refused,) = lines_saying(worker_lines, "push challenge refused")
    assert refused["request_id"] == NGINX_ID  # carried in the task message's headers
    (request_line,) = [line for line in lines_saying(server_lines, "request") if line["route"] == "/v1/verification/session"]
    assert request_line["request_id"] == NGINX_ID


def wait_for_line(path: str, msg: str, timeout: float = 15.0) -> list[dict]:
    """The JSON lines of a log file once one of them says `msg`."""
    deadline = time.monotonic() + timeout
    while True:
        with open(path) as file:
            lines = [json.loads(line) for line in file if line.startswith("{")]
        if lines_saying(lines, msg) or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)
