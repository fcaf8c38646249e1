"""Real server processes for end-to-end tests: the ASGI app under daphne (or, `procfile=True`, the
Procfile's production web command) on free loopback ports.

    with live_server_process() as server:              # one server, stopped on exit
        httpx.get(f"{server.url}/health/live")
    with live_server_processes(3) as nodes:            # several, started concurrently
        nodes[0].kill()                                # SIGKILL: a crash, nothing flushed

    def test_scale_out(server_processes):              # or the fixture: stopped after the test
        a, b = server_processes(2)

Every server shares the test database and Redis with the test process. A test that talks to such
a server must use `django_db(transaction=True)`: the server connects to the test database by name
and only sees committed rows. Stopping or killing a server waits until PostgreSQL has let go of
its sessions, so the test database can be flushed and dropped behind it. All waits are bounded;
only 127.0.0.1 is used. A server's output (stdout and stderr) is kept: `server.output()`, and it is
attached to any exception that leaves `live_server_process(es)`.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from django.conf import settings
from django.db import connection

PROJECT = Path(__file__).resolve().parents[1]
DAPHNE = Path(sys.executable).with_name("daphne")
START_TIMEOUT = 20.0  # import Django, connect, answer /health/live
STOP_TIMEOUT = 10.0  # graceful stop before SIGKILL
SESSIONS_TIMEOUT = 5.0  # PostgreSQL ends a dead client's sessions within milliseconds
START_ATTEMPTS = 3  # a free port can be taken between probing and binding it
DEV_CODE = "424242"

_running: set[ServerProcess] = set()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_database_url() -> str:
    """The database the running tests use (pytest-django's test database), as a URL."""
    db = connection.settings_dict
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


test_database_url.__test__ = False  # a helper, not a test


def procfile_command(process_type: str) -> str:
    """The command of one process type in the Procfile, as honcho reads it (`name: command`)."""
    for line in (PROJECT / "Procfile").read_text().splitlines():
        name, colon, command = line.partition(":")
        if colon and not line.lstrip().startswith("#") and name.strip() == process_type:
            return command.strip()
    raise AssertionError(f"no {process_type}: line in the Procfile")


class ServerProcess:
    """One server process: `url`, `ws_url`, `pid`, `alive`, `kill()` (SIGKILL), `stop()`, `output()`.
    daphne, or with `procfile` the Procfile's web command (uvicorn) with one worker, run as honcho
    runs it (`bash -c`, which execs it: `pid` is the server's)."""

    def __init__(self, port: int, env: dict[str, str], *, procfile: bool = False):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}"
        # PostgreSQL shows this name on the server's sessions (libpq reads PGAPPNAME).
        self.application_name = f"signalserver-test-{port}-{os.getpid()}"
        self.log = tempfile.TemporaryFile(mode="a+b", prefix=f"signalserver-{port}-")
        if procfile:
            command = ["bash", "-c", procfile_command("web")]
            env = {**env, "WEB_HOST": "127.0.0.1", "WEB_PORT": str(port), "WEB_WORKERS": "1"}
        else:
            command = [str(DAPHNE), "-b", "127.0.0.1", "-p", str(port), "signalserver.asgi:application"]
        self.process = subprocess.Popen(
            command,
            cwd=PROJECT,
            env={**env, "PGAPPNAME": self.application_name},
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        _running.add(self)

    def __repr__(self) -> str:
        return f"<ServerProcess {self.url} pid={self.pid} alive={self.alive}>"

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self, last: int = 4000) -> str:
        """The last `last` characters the process wrote (stdout and stderr)."""
        size = os.fstat(self.log.fileno()).st_size
        start = max(0, size - last)
        return os.pread(self.log.fileno(), size - start, start).decode("utf-8", "replace")

    def kill(self) -> None:
        """SIGKILL, as a crash: no graceful shutdown, nothing flushed."""
        if self.alive:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT)
        self._ended()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if the process has not exited within STOP_TIMEOUT."""
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT)
        self._ended()

    def wait_until_live(self, deadline: float) -> None:
        if answers_live(self.url, deadline, running=lambda: self.alive):
            return
        if not self.alive:
            raise ServerDidNotStart(self, f"exited with {self.process.returncode}")
        self.kill()
        raise ServerDidNotStart(self, f"not live within {START_TIMEOUT:.0f} s")

    def _ended(self) -> None:
        _running.discard(self)
        _wait_for_sessions_to_end(self.application_name)


def answers_live(url: str, deadline: float, *, running) -> bool:
    """Poll `GET url/health/live` until it answers 200 (True), or until the deadline passes or
    `running()` turns false (False)."""
    while time.monotonic() < deadline and running():
        try:
            if httpx.get(f"{url}/health/live", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    return False


class ServerDidNotStart(RuntimeError):
    def __init__(self, server: ServerProcess, reason: str):
        super().__init__(f"server on port {server.port} {reason}; its output:\n{server.output()}")
        self.port_taken = "Address already in use" in server.output()


def server_environment(**overrides: str) -> dict[str, str]:
    """What a server process runs with: the test database and Redis, development verification."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "signalserver.settings",
        "SIGNALSERVER_ENV": "development",
        "DEBUG": "false",
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "VERIFICATION_SENDER": "development",
        "DEV_VERIFICATION_CODE": DEV_CODE,
        "CELERY_TASK_ALWAYS_EAGER": "true",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",  # so output() shows what happened right before a kill
        **overrides,
    }


def start_servers(count: int = 1, *, procfile: bool = False, **env_overrides: str) -> list[ServerProcess]:
    """Start `count` servers at once on free ports and wait until every one answers /health/live."""
    env = server_environment(**env_overrides)
    servers = [ServerProcess(free_port(), env, procfile=procfile) for _ in range(count)]
    deadline = time.monotonic() + START_TIMEOUT
    try:
        for index, server in enumerate(servers):
            for attempt in range(1, START_ATTEMPTS + 1):
                try:
                    server.wait_until_live(deadline)
                    break
                except ServerDidNotStart as failure:
                    if not failure.port_taken or attempt == START_ATTEMPTS:
                        raise
                    server.kill()  # already exited; forget it
                    server = servers[index] = ServerProcess(free_port(), env, procfile=procfile)
    except BaseException:
        for server in servers:
            server.kill()
        raise
    return servers


def start_server(*, procfile: bool = False, **env_overrides: str) -> ServerProcess:
    return start_servers(1, procfile=procfile, **env_overrides)[0]


@contextmanager
def live_server_processes(count: int, **env_overrides: str) -> Iterator[list[ServerProcess]]:
    """`count` servers, started concurrently, stopped on exit (those not killed already)."""
    servers = start_servers(count, **env_overrides)
    try:
        yield servers
    except Exception as failure:
        for server in servers:
            failure.add_note(f"--- output of {server!r} ---\n{server.output(2000)}")
        raise
    finally:
        for server in servers:
            server.stop()


@contextmanager
def live_server_process(**env_overrides: str) -> Iterator[ServerProcess]:
    """One server on a free port, stopped on exit."""
    with live_server_processes(1, **env_overrides) as (server,):
        yield server


running_server = live_server_process  # the name tests/bench uses


@pytest.fixture
def server_processes(transactional_db):
    """`server_processes(count=1, **env)`: start servers, all stopped when the test ends (before the
    database is flushed). Import it into a test module to use it."""
    started: list[ServerProcess] = []

    def start(count: int = 1, **env_overrides: str) -> list[ServerProcess]:
        servers = start_servers(count, **env_overrides)
        started.extend(servers)
        return servers

    yield start
    for server in started:
        server.stop()


def _wait_for_sessions_to_end(application_name: str) -> None:
    """A dead server's PostgreSQL sessions linger until their backends notice; a test database
    with sessions cannot be dropped, and idle-in-transaction ones would block the next flush."""
    db = connection.settings_dict
    try:
        with psycopg.connect(
            host=db.get("HOST") or "127.0.0.1",
            port=db.get("PORT") or 5432,
            user=db.get("USER") or "postgres",
            password=db.get("PASSWORD") or None,
            dbname="postgres",  # not the test database: this session must not count itself
            connect_timeout=5,
            autocommit=True,
        ) as admin:
            deadline = time.monotonic() + SESSIONS_TIMEOUT
            while time.monotonic() < deadline:
                count = admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [application_name]
                ).fetchone()[0]
                if not count:
                    return
                time.sleep(0.02)
    except psycopg.Error:
        return  # best effort: without the maintenance database, Django reports it at teardown


@atexit.register
def _kill_leftovers() -> None:
    """If the test process ends abnormally, no server outlives it."""
    for server in list(_running):
        if server.alive:
            server.process.kill()
