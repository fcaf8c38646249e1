"""The fault suite: real server processes (the Procfile's web command, as in production) on a
PostgreSQL and a Redis of the suite's own (tests/faults/backing.py), which tests stop and start
again while clients talk to the server over real sockets.

The services are started once per session (the database migrated once); a test that stops one
gets it back running before the next test starts, and every test gets a fresh server process.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.faults.backing import PostgresServer, RedisServer
from tests.faults.helpers import DATABASE
from tests.servers import PROJECT, ServerProcess, start_server

MIGRATE_TIMEOUT = 120.0


@pytest.fixture(scope="session")
def postgres():
    server = PostgresServer()
    try:
        server.start()
        server.create_database(DATABASE)
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "signalserver.settings",
            "SIGNALSERVER_ENV": "development",
            "DATABASE_URL": server.url(DATABASE),
            "REDIS_URL": "",
        }
        migrated = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=PROJECT,
            env=env,
            capture_output=True,
            text=True,
            timeout=MIGRATE_TIMEOUT,
        )
        assert migrated.returncode == 0, migrated.stderr
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def server(postgres, redis_server) -> ServerProcess:
    """A fresh server process (uvicorn, as the Procfile runs it) on the suite's PostgreSQL and Redis;
    stopped after the test, and the services running again for the next one."""
    yield from _server(postgres, redis_server, procfile=True)


@pytest.fixture
def daphne_server(postgres, redis_server) -> ServerProcess:
    """The same under daphne (`manage.py runserver`, the other end-to-end tests), which lacks ASGI's
    WebSocket denial response."""
    yield from _server(postgres, redis_server, procfile=False)


def _server(postgres, redis_server, *, procfile: bool):
    process = start_server(
        procfile=procfile, DATABASE_URL=postgres.url(DATABASE), REDIS_URL=redis_server.url, LOG_LEVEL="INFO"
    )
    try:
        yield process
    finally:
        process.stop()
        print(f"--- output of {process!r} ---\n{process.output(8000)}")  # shown when the test fails
        if not redis_server.running:
            redis_server.start()
        if not postgres.running:
            postgres.start()
