"""Backing services of the fault suite's own: a redis-server and a PostgreSQL cluster on free
loopback ports, in temporary directories, so that tests may stop and start them while a real
server process uses them.

    redis = RedisServer(); redis.start(); redis.stop(); redis.start(); redis.cleanup()
    postgres = PostgresServer(); postgres.start(); postgres.create_database("signalserver")

PostgreSQL refuses to run as root: as root its commands run as the `postgres` user (`runuser`),
in a directory owned by it. Every wait is bounded; only 127.0.0.1 is used; `cleanup()` stops the
service and removes its directory (also at exit, if a test run ends abnormally).
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

import psycopg

from tests.servers import free_port

WAIT = 10.0  # seconds a start or stop may take

_live: set = set()


class RedisServer:
    """`redis-server` keeping nothing on disk, as Redis runs here: a restart comes back empty."""

    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = tempfile.TemporaryFile(mode="a+b", prefix="signalserver-faults-redis-")
        self.process: subprocess.Popen | None = None
        _live.add(self)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start (again, on the same port) and wait until it answers PING."""
        assert not self.running
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and self.running:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as probe:
                    probe.sendall(b"PING\r\n")
                    if probe.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        """SIGKILL, as a crash: every connection drops at once and nothing is kept."""
        if self.running:
            self.process.kill()
            self.process.wait(timeout=WAIT)

    def cleanup(self) -> None:
        self.stop()
        self.log.close()
        _live.discard(self)


class PostgresServer:
    """A PostgreSQL cluster of its own (trust authentication, no fsync): `url(dbname)`."""

    def __init__(self):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda path: int(path.split("/")[4]))
        if not bins:
            raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql")
        self.bin = os.path.dirname(bins[-1])
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="signalserver-faults-pg-")
        self.data = os.path.join(self.dir, "data")
        self.as_owner: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
            self.as_owner = ["runuser", "-u", "postgres", "--"]
        _live.add(self)
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync")

    def url(self, dbname: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(
            [*self.as_owner, os.path.join(self.bin, program), *args],
            check=True,
            capture_output=True,
            timeout=WAIT * 3,
            cwd=self.dir,
        )

    @property
    def running(self) -> bool:
        return os.path.exists(os.path.join(self.data, "postmaster.pid"))

    def start(self) -> None:
        """Start (again, on the same port) and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        log = os.path.join(self.dir, "postgres.log")
        self._run("pg_ctl", "-D", self.data, "-l", log, "-w", "-t", str(int(WAIT)), "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        """`fast`: every session is ended (the clients see their connections close), then a clean
        shutdown; `immediate`: as a crash."""
        if self.running:
            self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", str(int(WAIT)), "stop")

    def create_database(self, dbname: str) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{dbname}"')

    def cleanup(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.SubprocessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
        _live.discard(self)


@atexit.register
def _cleanup_leftovers() -> None:
    for service in list(_live):
        service.cleanup()
