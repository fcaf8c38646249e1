"""The launcher of real server processes (tests/servers.py) that end-to-end and scale-out tests use."""

import asyncio
import time

import httpx
import psycopg
import pytest
from django.db import connection

from tests.servers import live_server_processes, server_processes  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db(transaction=True)


def sessions_of(server) -> int:
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"] or "postgres",
        password=db["PASSWORD"] or None, dbname="postgres", autocommit=True,
    ) as admin:
        query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
        return admin.execute(query, [server.application_name]).fetchone()[0]


def test_several_servers_run_at_once_and_one_can_be_killed_without_the_others():
    with live_server_processes(2) as (first, second):
        assert first.port != second.port
        for server in (first, second):
            assert httpx.get(f"{server.url}/health/ready", timeout=5).status_code == 200
            assert sessions_of(server) > 0  # it reached the test database

        first.kill()
        assert not first.alive and first.process.returncode == -9
        assert sessions_of(first) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{first.url}/health/live", timeout=2)
        assert httpx.get(f"{second.url}/health/live", timeout=5).status_code == 200
    assert not second.alive and sessions_of(second) == 0


def test_the_fixture_stops_its_servers_after_the_test_and_keeps_their_output(server_processes):  # noqa: F811
    [server] = server_processes()
    httpx.get(f"{server.url}/health/live", timeout=5)
    deadline = time.monotonic() + 2  # the access log line is written just after the response
    while '"GET /health/live" 200' not in server.output() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert '"GET /health/live" 200' in server.output()


def test_an_exception_inside_carries_the_servers_output():
    with pytest.raises(AssertionError) as failure, live_server_processes(1) as (server,):
        raise AssertionError("the test failed")
    assert any(note.startswith(f"--- output of <ServerProcess {server.url} ") for note in failure.value.__notes__)
    assert not server.alive


async def test_daphne_closes_a_socket_for_a_bad_frame_without_a_traceback():
    # daphne (`make run`) refuses protocol close codes such as 1007 from a server; the socket
    # still closes (with 1000), and the server logs nothing about it.
    import websockets

    with live_server_processes(1) as (server,):
        async with websockets.connect(f"{server.ws_url}/v1/websocket/") as ws:
            await ws.send(b"\xff\xff\xff")  # not a WebSocketMessage
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1000
        time.sleep(0.2)
        assert "Traceback" not in server.output(20_000), server.output(4000)
