"""PostgreSQL stops (every session ended, as in a restart) under a running server, then starts again.

- Meanwhile requests that need it answer 503 with Retry-After within ANSWER_DEADLINE (over HTTP,
  over an open socket, and WebSocket upgrades), `/health/ready` answers 503 within READY_DEADLINE,
  and the server logs no traceback.
- Once it is back, requests succeed within RECOVERY seconds, without a restart: the pooled
  connections and those the socket database threads keep are replaced, even when nothing used
  them during the outage (no request fails on a connection PostgreSQL closed).
- A message acknowledged during a short outage is not delivered again: the failed deletes are
  retried once PostgreSQL is back.
"""

import asyncio
import time

import httpx
import psycopg

from accounts.models import Device
from messaging.envelopes import parse_envelope
from messaging.models import QueuedMessage
from tests.faults.helpers import DATABASE, WAIT, first_success, refused_upgrade, send, send_over_socket, timed, tracebacks
from tests.live_clients import ChatSocket, register_account

ANSWER_DEADLINE = 1.5  # seconds for a request to be answered 503 while PostgreSQL is down
READY_DEADLINE = 1.0  # seconds for /health/ready to answer 503 meanwhile
RECOVERY = 1.5  # seconds from PostgreSQL accepting connections to requests succeeding again
ACKS_DELETED_DEADLINE = 20.0  # seconds for acknowledgements that failed to be retried and done
MESSAGES = 5
POOL_WARMUP = 6  # requests at once, so that the pool keeps several connections


async def test_requests_answer_503_quickly_during_a_postgresql_outage_and_succeed_soon_after(server, postgres):
    alice, bob = await register_account(server.url), await register_account(server.url)
    whoami = {"headers": {"Authorization": alice.authorization}}
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
        alice_ws = await ChatSocket.connect(server.ws_url, alice.authorization)
        bob_ws = await ChatSocket.connect(server.ws_url, bob.authorization)
        try:
            assert await alice_ws.backlog(WAIT) == [] and await bob_ws.backlog(WAIT) == []

            postgres.stop()
            timings = {}
            for name in ("whoami", "whoami again", "send", "long poll"):
                started = time.monotonic()
                if name == "send":
                    response = await send(http, alice, bob, b"while PostgreSQL is down")
                elif name == "long poll":  # a plain Django view, not DRF
                    response = await http.get("/v1/messages?wait=1", **whoami)
                else:
                    response = await http.get("/v1/accounts/whoami", **whoami)
                timings[name] = time.monotonic() - started
                assert response.status_code == 503, (name, response.text)
                assert int(response.headers["Retry-After"]) > 0
                assert timings[name] < ANSWER_DEADLINE, timings

            ready, seconds = await timed(http, "GET", "/health/ready")
            assert ready.status_code == 503 and "database" in ready.json()["unavailable"]
            assert seconds < READY_DEADLINE, seconds
            timings["ready"] = seconds

            started = time.monotonic()
            tunnelled = await send_over_socket(alice_ws, bob, b"tunnelled while PostgreSQL is down")
            timings["tunnelled send"] = time.monotonic() - started
            assert tunnelled.status == 503, tunnelled.body
            assert any(header.lower().startswith("retry-after:") for header in tunnelled.headers), tunnelled.headers
            assert timings["tunnelled send"] < ANSWER_DEADLINE

            status, headers, seconds = await refused_upgrade(server.ws_url, bob)
            assert status == 503 and int(headers["retry-after"]) > 0 and seconds < ANSWER_DEADLINE
            timings["upgrade"] = seconds

            postgres.start()

            async def whoami_succeeds() -> bool:
                return (await http.get("/v1/accounts/whoami", **whoami)).status_code == 200

            recovered_in = await first_success(whoami_succeeds, RECOVERY * 4)
            assert recovered_in < RECOVERY, f"requests succeeded again {recovered_in:.2f} s after PostgreSQL was back"
            assert (await http.get("/health/ready")).status_code == 200

            # The sockets that were open all along work again at once: their database threads
            # replaced the connections that PostgreSQL closed.
            tunnelled = await send_over_socket(alice_ws, bob, b"after the outage")
            assert tunnelled.status == 200, tunnelled.body
            delivery = await bob_ws.next_message(WAIT)
            assert parse_envelope(delivery.body).content == b"after the outage"
            await bob_ws.ack(delivery)
        finally:
            await alice_ws.close()
            await bob_ws.close()

    output = server.output(10**7)
    assert tracebacks(output) == [], output[-6000:]
    print(
        "while PostgreSQL was down (ms): "
        + ", ".join(f"{name} {seconds * 1000:.0f}" for name, seconds in timings.items())
        + f"; requests succeeded again {recovered_in:.2f} s after it was back"
    )


async def test_after_a_quiet_postgresql_restart_no_request_fails_on_a_connection_it_closed(server, postgres):
    """Nothing asks for the database while it restarts: the idle pooled connections and the ones the
    socket database threads keep are all dead, and none of them is used afterwards."""
    alice, bob = await register_account(server.url), await register_account(server.url)
    whoami = {"headers": {"Authorization": alice.authorization}}
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
        async with await ChatSocket.connect(server.ws_url, alice.authorization) as alice_ws:
            async with await ChatSocket.connect(server.ws_url, bob.authorization) as bob_ws:
                assert await alice_ws.backlog(WAIT) == [] and await bob_ws.backlog(WAIT) == []
                # Several requests at once: the pool holds several idle connections afterwards.
                warm = await asyncio.gather(*(http.get("/v1/accounts/whoami", **whoami) for _ in range(POOL_WARMUP)))
                assert {response.status_code for response in warm} == {200}
                assert (await send_over_socket(alice_ws, bob, b"before")).status == 200
                await bob_ws.ack(await bob_ws.next_message(WAIT))

                postgres.stop()
                postgres.start()

                after = await asyncio.gather(*(http.get("/v1/accounts/whoami", **whoami) for _ in range(POOL_WARMUP)))
                assert [response.status_code for response in after] == [200] * POOL_WARMUP
                for index in range(3):
                    tunnelled = await send_over_socket(alice_ws, bob, f"after {index}".encode())
                    assert tunnelled.status == 200, tunnelled.body
                    delivery = await bob_ws.next_message(WAIT)
                    assert parse_envelope(delivery.body).content == f"after {index}".encode()
                    await bob_ws.ack(delivery)

    output = server.output(10**7)
    assert tracebacks(output) == [], output[-6000:]


async def test_messages_acknowledged_during_a_short_postgresql_outage_are_not_delivered_again(server, postgres):
    alice, bob = await register_account(server.url), await register_account(server.url)
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
        async with await ChatSocket.connect(server.ws_url, bob.authorization) as bob_ws:
            assert await bob_ws.backlog(WAIT) == []
            for index in range(MESSAGES):
                response = await send(http, alice, bob, f"message {index}".encode())
                assert response.status_code == 200, response.text
            deliveries = [await bob_ws.next_message(WAIT) for _ in range(MESSAGES)]
            assert _queued(postgres, bob.aci) == MESSAGES

            postgres.stop()
            for delivery in deliveries:
                await bob_ws.ack(delivery)  # the server's DELETE of these rows fails now
            await bob_ws.expect_no_request(0.5)
            postgres.start()

            async def acknowledged_rows_deleted() -> bool:
                return _queued(postgres, bob.aci) == 0

            deleted_in = await first_success(acknowledged_rows_deleted, ACKS_DELETED_DEADLINE, interval=0.1)

        # Bob comes back: nothing he acknowledged is delivered again.
        async with await ChatSocket.connect(server.ws_url, bob.authorization) as bob_again:
            redelivered = await bob_again.backlog(WAIT)
            assert redelivered == [], f"{len(redelivered)} acknowledged messages delivered again"
            await bob_again.expect_no_request(0.3)

    output = server.output(10**7)
    assert tracebacks(output) == [], output[-6000:]
    print(f"{MESSAGES} messages acknowledged during the outage: their rows were deleted {deleted_in:.2f} s after "
          "PostgreSQL was back; none delivered again")


def _queued(postgres, aci: str) -> int:
    """Rows queued for the account's devices, read straight from the suite's database."""
    queue, devices = QueuedMessage._meta.db_table, Device._meta.db_table
    with psycopg.connect(postgres.url(DATABASE), connect_timeout=5) as connection:
        return connection.execute(
            f"SELECT count(*) FROM {queue} q JOIN {devices} d ON d.id = q.device_id WHERE d.account_id = %s", [aci]
        ).fetchone()[0]
