"""The production web process of `make serve`: the `web:` line of the Procfile, read from the file
and run as honcho runs it (`bash -c` in the project directory, its own process group), on the test
PostgreSQL database and Redis (tests/servers.py), with one worker on a free loopback port.

- It answers `GET /health/live` within START_TIMEOUT and `GET /health/ready` (it reaches the
  database and Redis).
- A device's authenticated `/v1/websocket/` upgrade carries `X-Signal-Timestamp` (the server time
  in milliseconds) and accepts no permessage-deflate that the client offers (frames carry
  ciphertext, which does not compress: deflating it costs CPU on both ends for nothing), and a message another device sends over HTTP arrives on that socket.
- Its output (stdout and stderr, at the production LOG_LEVEL=INFO) names no client address: the
  Procfile turns uvicorn's access log off and its own level to warning, since uvicorn's info
  lines ("127.0.0.1:54321 - "WebSocket /v1/websocket/" [accepted]") name the peer (the privacy
  rule: no IP addresses in logs). Nor does it hold a traceback or a Python warning (such as uvicorn's
  deprecation warning for its legacy `--ws websockets` implementation).
- SIGTERM to the group while the socket is open: the socket is closed with 1012 (service restart,
  clients reconnect elsewhere) and the whole group has exited within STOP_DEADLINE (the Procfile's
  graceful-shutdown timeout is 10 s).

Every wait is bounded; only 127.0.0.1 is used. Whatever happens, the group is SIGKILLed at the end
and the test waits until PostgreSQL has let go of the server's sessions, so the database can be
flushed.
"""

import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import httpx
import pytest

from messaging.envelopes import parse_envelope
from tests.factories import device_auth
from tests.live_clients import MESSAGE_PATH, ChatSocket
from tests.messaging.test_end_to_end import pair, send_over_http  # noqa: F401 (pair is a fixture)
from tests.servers import (
    PROJECT,
    START_ATTEMPTS,
    START_TIMEOUT,
    _wait_for_sessions_to_end,
    answers_live,
    free_port,
    procfile_command,
    server_environment,
)

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 5.0  # seconds any single frame, close or request may take
STOP_DEADLINE = 15.0  # SIGTERM → every process of the group gone


class ProcfileProcess:
    """One Procfile command under `bash -c` in its own session; output kept in a temporary file."""

    def __init__(self, command: str, env: dict[str, str]):
        self.log = tempfile.TemporaryFile(mode="a+b", prefix="signalserver-procfile-")
        self.process = subprocess.Popen(
            ["bash", "-c", command],
            cwd=PROJECT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as honcho starts each process
        )
        self.pgid = self.process.pid

    def output(self) -> str:
        size = os.fstat(self.log.fileno()).st_size
        return os.pread(self.log.fileno(), size, 0).decode("utf-8", "replace")

    def group_alive(self) -> bool:
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            return False
        return True

    def signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.pgid, signum)
        except ProcessLookupError:
            pass

    def wait_until_live(self, url: str, deadline: float) -> None:
        if answers_live(url, deadline, running=lambda: self.process.poll() is None):
            return
        if self.process.poll() is not None:
            raise RuntimeError(f"exited with {self.process.returncode}; its output:\n{self.output()}")
        raise TimeoutError(f"/health/live did not answer 200 within {START_TIMEOUT:.0f} s; output:\n{self.output()}")

    async def wait_for_group_exit(self, deadline: float) -> bool:
        """Reap the leader, then wait until no process of the group is left (False at the deadline)."""
        while time.monotonic() < deadline:
            if self.process.poll() is not None and not self.group_alive():
                return True
            await asyncio.sleep(0.02)
        return False

    def kill(self) -> None:
        """SIGKILL whatever is left of the group, reap the leader."""
        self.signal_group(signal.SIGKILL)
        try:
            self.process.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            pass


def start_web(command: str, application_name: str) -> tuple[ProcfileProcess, int]:
    """The web command on a free port, live; retried when the port was taken in between."""
    for attempt in range(1, START_ATTEMPTS + 1):
        port = free_port()
        # LOG_LEVEL as in production (.env.example), so the app's own lines are in the output too.
        env = server_environment(
            WEB_HOST="127.0.0.1", WEB_PORT=str(port), WEB_WORKERS="1", LOG_LEVEL="INFO", PGAPPNAME=application_name
        )
        web = ProcfileProcess(command, env)
        try:
            web.wait_until_live(f"http://127.0.0.1:{port}", time.monotonic() + START_TIMEOUT)
            return web, port
        except Exception:
            web.kill()
            if "Address already in use" not in web.output() or attempt == START_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def client_addresses(output: str, server_port: int) -> list[str]:
    """Every mention of 127.0.0.1 in the output other than the server's own listening address."""
    return re.findall(r"127\.0\.0\.1\S{0,8}", output.replace(f"127.0.0.1:{server_port}", ""))


async def test_the_procfile_web_process_serves_sockets_logs_no_addresses_and_stops_on_sigterm(pair):  # noqa: F811
    alice, bob = pair
    command = procfile_command("web")
    application_name = f"signalserver-procfile-{os.getpid()}"
    web, port = start_web(command, application_name)
    url, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
    try:
        assert httpx.get(f"{url}/health/ready", timeout=WAIT).status_code == 200

        before = time.time_ns() // 1_000_000
        bob_ws = await ChatSocket.connect(ws_url, device_auth(bob), timeout=WAIT)
        after = time.time_ns() // 1_000_000
        try:
            timestamp = bob_ws.ws.response.headers.get("X-Signal-Timestamp")
            assert timestamp is not None and re.fullmatch(r"\d{13}", timestamp), bob_ws.ws.response.headers
            assert before <= int(timestamp) <= after
            assert "Sec-WebSocket-Extensions" not in bob_ws.ws.response.headers  # deflate was offered

            assert await bob_ws.backlog(WAIT) == []
            await send_over_http(url, device_auth(alice), bob.account_id, bob.registration_id, b"via Procfile", 44)
            delivery = await bob_ws.next_request(WAIT)
            assert (delivery.verb, delivery.path) == ("PUT", MESSAGE_PATH)
            envelope = parse_envelope(delivery.body)
            assert (envelope.content, envelope.client_timestamp) == (b"via Procfile", 44)
            assert envelope.source_service_id_text == str(alice.account_id)
            await bob_ws.ack(delivery)

            # Graceful stop with the socket still open.
            stopping = time.monotonic()
            web.signal_group(signal.SIGTERM)
            assert await bob_ws.wait_closed(WAIT) == 1012  # service restart: reconnect elsewhere
            exited = await web.wait_for_group_exit(stopping + STOP_DEADLINE)
            stopped_in = time.monotonic() - stopping
            assert exited, f"process group still running {STOP_DEADLINE:.0f} s after SIGTERM"
            assert web.process.returncode in (0, -signal.SIGTERM, 128 + signal.SIGTERM), web.process.returncode
        finally:
            await bob_ws.close()  # already closed by the server, unless an assertion failed first

        output = web.output()
        assert client_addresses(output, port) == [], f"client addresses in the server's output:\n{output}"
        assert not re.search(r"Traceback|\w+Warning: ", output), f"errors or warnings in the server's output:\n{output}"
    except Exception as failure:
        failure.add_note(f"--- output of `{command}` ---\n{web.output()[-4000:]}")
        raise
    finally:
        web.kill()
        _wait_for_sessions_to_end(application_name)
    print(f"stopped {stopped_in:.2f} s after SIGTERM; the server's output ({len(output)} characters):\n{output}")


def test_the_production_entry_point_tunes_garbage_collection_and_the_setting_turns_it_off():
    """signalserver.asgi freezes what start-up loaded and collects the young generation rarely
    (docs/performance.md); TUNE_GARBAGE_COLLECTION=false keeps Python's defaults."""
    probe = "import gc, signalserver.asgi; print(gc.get_threshold()[0], gc.get_freeze_count() > 0)"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "signalserver.settings", "SIGNALSERVER_ENV": "development"}
    tuned = subprocess.run([sys.executable, "-c", probe], env=env, cwd=PROJECT, capture_output=True, text=True, timeout=60)
    assert tuned.stdout.split() == ["50000", "True"], tuned.stderr
    env["TUNE_GARBAGE_COLLECTION"] = "false"
    default = subprocess.run([sys.executable, "-c", probe], env=env, cwd=PROJECT, capture_output=True, text=True, timeout=60)
    assert default.stdout.split() == ["700", "False"], default.stderr
