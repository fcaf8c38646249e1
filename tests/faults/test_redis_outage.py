"""Redis dies (SIGKILL, and it comes back empty) under a running server.

- Open sockets ride it out: they stay open and answer keepalives, and once Redis is back they
  receive what was sent to them meanwhile (it waited in PostgreSQL) and what is sent afterwards,
  and their channel-layer readers work again.
- Upgrades meanwhile are refused with 503 and Retry-After, quickly, and the server logs no
  traceback for them (nor for anything else); plain requests that do not need Redis still work,
  those whose rate limit cannot be checked answer by their limiter's rule, never 500.
- Once Redis is back, a new upgrade succeeds within RECOVERY seconds.
"""

import time

import httpx

from messaging.envelopes import parse_envelope
from tests.faults.helpers import WAIT, first_success, refused_upgrade, send, send_over_socket, timed, tracebacks
from tests.live_clients import ChatSocket, register_account

UPGRADES_DURING_OUTAGE = 20
REFUSAL_DEADLINE = 1.0  # seconds for one refused upgrade
RECOVERY = 1.5  # seconds from Redis answering again to a new upgrade being accepted
MAX_WARNINGS = 10  # warning lines in the server's output over the whole test


async def test_sockets_ride_out_a_redis_outage_and_upgrades_meanwhile_get_503(server, redis_server):
    alice, bob = await register_account(server.url), await register_account(server.url)
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
        alice_ws = await ChatSocket.connect(server.ws_url, alice.authorization)
        bob_ws = await ChatSocket.connect(server.ws_url, bob.authorization)
        try:
            assert await alice_ws.backlog(WAIT) == [] and await bob_ws.backlog(WAIT) == []

            redis_server.stop()
            refusals = [await refused_upgrade(server.ws_url, bob) for _ in range(UPGRADES_DURING_OUTAGE)]
            for status, headers, seconds in refusals:
                assert status == 503, refusals
                assert int(headers["retry-after"]) > 0
                assert seconds < REFUSAL_DEADLINE, refusals

            # Plain requests: one that needs only PostgreSQL works; readiness says what is down.
            response, _ = await timed(http, "GET", "/v1/accounts/whoami", headers={"Authorization": bob.authorization})
            assert response.status_code == 200, response.text
            ready, seconds = await timed(http, "GET", "/health/ready")
            assert (ready.status_code, ready.json()["unavailable"]) == (503, ["redis"]) and seconds < REFUSAL_DEADLINE
            # A long poll (a plain Django view, not DRF) waits on the channel layer: 503, not 500.
            long_poll, seconds = await timed(http, "GET", "/v1/messages?wait=1", headers={"Authorization": bob.authorization})
            assert long_poll.status_code == 503 and int(long_poll.headers["Retry-After"]) > 0, long_poll.text
            assert seconds < REFUSAL_DEADLINE
            # A verification session needs a limiter that does not fail open: 503, to come back later.
            session = await http.post("/v1/verification/session", json={"number": "+12015550177"})
            assert session.status_code in (200, 503), session.text
            if session.status_code == 503:
                assert int(session.headers["Retry-After"]) > 0

            # Sends are stored (the messages limiter fails open), over HTTP and over a socket.
            during = await send(http, alice, bob, b"sent while Redis was down")
            assert during.status_code == 200, during.text
            tunnelled = await send_over_socket(alice_ws, bob, b"tunnelled while Redis was down")
            assert tunnelled.status == 200, tunnelled.body

            # Bob's socket is still there and answers its keepalives.
            keepalive = await bob_ws.request("GET", "/v1/keepalive", timeout=WAIT)
            assert keepalive.status == 200

            redis_server.start()
            back = time.monotonic()

            async def upgrade_accepted() -> bool:
                try:
                    socket = await ChatSocket.connect(server.ws_url, alice.authorization, timeout=WAIT)
                except Exception:
                    return False
                await socket.close()
                return True

            recovered_in = await first_success(upgrade_accepted, RECOVERY * 4)
            assert recovered_in < RECOVERY, f"upgrades accepted again {recovered_in:.2f} s after Redis was back"

            # What was sent during the outage reaches the socket that rode it out, once Redis is back.
            contents = set()
            for _ in range(2):
                delivery = await bob_ws.next_message(WAIT)
                contents.add(_content(delivery))
                await bob_ws.ack(delivery)
            caught_up_in = time.monotonic() - back
            assert contents == {b"sent while Redis was down", b"tunnelled while Redis was down"}

            # And live delivery works again.
            after = await send(http, alice, bob, b"sent after Redis came back")
            assert after.status_code == 200, after.text
            delivery = await bob_ws.next_message(WAIT)
            assert _content(delivery) == b"sent after Redis came back"
            await bob_ws.ack(delivery)
            assert bob_ws.close_code is None

            # Its channel-layer reader reads again: a newer socket of Bob displaces it through Redis.
            async with await ChatSocket.connect(server.ws_url, bob.authorization) as bob_again:
                assert await bob_ws.wait_closed(WAIT) == 4409
                # Delivery is at least once: the message acked just before may come again if the new
                # socket read the queue before that ack was applied (clients drop it by its guid);
                # nothing else may.
                backlog = await bob_again.backlog(WAIT)
                assert {_content(message) for message in backlog} <= {b"sent after Redis came back"}, backlog
        finally:
            await alice_ws.close()
            await bob_ws.close()

    output = server.output(10**7)
    assert tracebacks(output) == [], output[-6000:]
    warnings = [line for line in output.splitlines() if '"level": "warning"' in line]
    assert len(warnings) <= MAX_WARNINGS, "\n".join(warnings)
    print(
        f"{UPGRADES_DURING_OUTAGE} upgrades refused with 503, slowest {max(s for _, _, s in refusals) * 1000:.0f} ms; "
        f"upgrades accepted {recovered_in:.2f} s after Redis was back; the open socket had what was sent "
        f"meanwhile {caught_up_in:.2f} s after; {len(warnings)} warning lines"
    )


async def test_without_the_denial_extension_upgrades_during_a_redis_outage_are_accepted_and_closed(daphne_server, redis_server):
    """daphne (`manage.py runserver`) cannot answer an upgrade with 503: the socket is accepted and
    closed at once (1011 where the server allows it; daphne sends no 1011), without a traceback."""
    bob = await register_account(daphne_server.url)
    redis_server.stop()
    socket = await ChatSocket.connect(daphne_server.ws_url, bob.authorization, timeout=WAIT)
    assert await socket.wait_closed(WAIT) in (1011, 1000)
    redis_server.start()
    async with await ChatSocket.connect(daphne_server.ws_url, bob.authorization, timeout=WAIT) as again:
        assert await again.backlog(WAIT) == []
    output = daphne_server.output(10**7)
    assert tracebacks(output) == [], output[-6000:]


def _content(delivery) -> bytes:
    return parse_envelope(delivery.body).content
