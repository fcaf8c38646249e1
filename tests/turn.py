"""A real TURN server for tests: coturn's `turnserver` (Debian package coturn, installed by
`make test`) on a free loopback port, with REST-API credentials (`use-auth-secret`) under a random
shared secret, and a TURN client that allocates a relay on it.

    from tests.turn import turn_server  # noqa: F401 (the fixture)

    def test_relay(turn_server, settings):              # one server for the test module
        settings.TURN_SECRET = turn_server.secret
        settings.TURN_URLS = turn_server.urls()
        relayed = asyncio.run(allocate(url, username, password))   # or `await` in an async test

    with TurnServer() as server:                         # or by hand, outside pytest
        ...

The server listens on 127.0.0.1 only, UDP and TCP on one port, relays from 127.0.0.1 on ports of a
small range, and lets peers on loopback be reached (coturn refuses them by default). No TLS, DTLS,
CLI or config file (`-n`: /etc/turnserver.conf is not read); its pid file, user database and log
live in a temporary directory that stop() removes. Its log (verbose: every allocation and refusal)
reads with `output()` while it runs, and is attached to the exception when it does not start. All
waits are bounded; a turnserver left running when the test process ends is killed.
"""

from __future__ import annotations

import asyncio
import atexit
import random
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aioice import stun, turn

from tests.servers import free_port

TURNSERVER = Path("/usr/bin/turnserver")
REALM = "signalserver.test"
START_TIMEOUT = 10.0  # measured: ready 0.25 s after it starts
STOP_TIMEOUT = 10.0  # SIGTERM, then SIGKILL
START_ATTEMPTS = 3  # a free port can be taken between probing and binding it
RELAY_PORTS = 100  # relay ports of one server: plenty for a test module's allocations
PROBE_TIMEOUT = 0.2  # one Binding request
# A TURN request is answered at once on loopback; aioice would retransmit an unanswered one for ~60 s.
ALLOCATE_TIMEOUT = 5.0

_running: set[TurnServer] = set()


class TurnServerDidNotStart(RuntimeError):
    pass


class PortTaken(TurnServerDidNotStart):
    pass


class TurnServer:
    """One coturn `turnserver` on 127.0.0.1:`port` (UDP and TCP), checking REST-API credentials
    under `secret` in `realm`."""

    def __init__(self):
        # Random for each server, so no test can pass with a secret it guessed or hard-coded.
        self.secret = secrets.token_urlsafe(24)
        self.realm = REALM
        self.port = 0
        self.relay_ports = range(0)  # where allocations get their relayed address
        self.process: subprocess.Popen | None = None
        self.directory: Path | None = None

    def __repr__(self) -> str:
        return f"<TurnServer 127.0.0.1:{self.port or '(not started)'} pid={self.pid} alive={self.alive}>"

    def __enter__(self) -> TurnServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def urls(self) -> list[str]:
        """TURN_URLS for this server: UDP and TCP."""
        return [f"turn:127.0.0.1:{self.port}?transport=udp", f"turn:127.0.0.1:{self.port}?transport=tcp"]

    def output(self, last: int = 6000) -> str:
        """The last `last` characters of the server's log and of what it wrote before opening it."""
        if self.directory is None:
            return ""
        texts = []
        for name in ("stdout.txt", "turn.log"):
            path = self.directory / name
            if path.exists():
                texts.append(f"--- {name}\n" + path.read_text(errors="replace")[-last:])
        return "\n".join(texts)

    # --- starting and stopping ---

    def start(self) -> TurnServer:
        """Start turnserver and wait (at most START_TIMEOUT) until it answers a STUN Binding request
        over UDP and accepts a TCP connection. On a port taken meanwhile it tries other ports."""
        if self.alive:
            return self
        deadline = time.monotonic() + START_TIMEOUT
        try:
            for attempt in range(1, START_ATTEMPTS + 1):
                self._spawn()
                try:
                    self._wait_until_ready(deadline)
                    return self
                except PortTaken:
                    if attempt == START_ATTEMPTS:
                        raise
                    self.stop()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop turnserver (SIGTERM, then SIGKILL) and remove its directory."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=STOP_TIMEOUT)
            self.process = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
        _running.discard(self)

    def _spawn(self) -> None:
        if not TURNSERVER.exists():
            raise TurnServerDidNotStart(f"{TURNSERVER} is missing: `make /usr/bin/turnserver` installs coturn")
        self.directory = Path(tempfile.mkdtemp(prefix="coturn-"))
        self.port = free_port()
        # Relay ports from a random window of the dynamic range; coturn skips ports in use.
        min_port = random.randrange(49152, 65536 - RELAY_PORTS)
        self.relay_ports = range(min_port, min_port + RELAY_PORTS)
        command = [
            str(TURNSERVER),
            "-n",  # no configuration file: only these options
            "--listening-ip=127.0.0.1",
            f"--listening-port={self.port}",
            "--relay-ip=127.0.0.1",
            f"--min-port={min_port}",
            f"--max-port={self.relay_ports[-1]}",
            "--use-auth-secret",
            f"--static-auth-secret={self.secret}",
            f"--realm={self.realm}",
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--no-rfc5780",  # one address: no NAT behaviour discovery (and no second port)
            "--allow-loopback-peers",  # refused by default; every address here is loopback
            f"--log-file={self.directory / 'turn.log'}",
            "--simple-log",  # exactly that file name, no date or pid added
            "--no-stdout-log",
            "--verbose",  # each allocation and refusal in the log
            # Kept out of the system's paths (/var/run/turnserver.pid, /var/lib/turn/turndb).
            f"--pidfile={self.directory / 'turnserver.pid'}",
            f"--userdb={self.directory / 'turndb'}",
        ]
        with open(self.directory / "stdout.txt", "wb") as stdout:
            self.process = subprocess.Popen(
                [*_die_with_parent(), *command],
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.STDOUT,
            )
        _running.add(self)

    def _wait_until_ready(self, deadline: float) -> None:
        stage = "a STUN Binding answer over UDP"
        last_error: Exception | None = None
        while time.monotonic() < deadline and self.alive:
            # turnserver does not exit when its port is taken: it tries to bind again and again.
            if "address already in use" in self.output(20000).lower():
                raise PortTaken(f"port {self.port} is taken; turnserver's output:\n{self.output()}")
            try:
                if stage == "a STUN Binding answer over UDP":
                    _binding_over_udp(("127.0.0.1", self.port))
                    stage = "a TCP connection"
                with socket.create_connection(("127.0.0.1", self.port), timeout=PROBE_TIMEOUT):
                    return
            except OSError as error:
                last_error = error
                time.sleep(0.05)
        reason = f"exited with {self.process.returncode}" if not self.alive else f"not ready in {START_TIMEOUT:.0f} s"
        raise TurnServerDidNotStart(
            f"turnserver {reason}, waiting for {stage} (last error: {last_error!r}); its output:\n{self.output()}"
        )


def _binding_over_udp(address: tuple[str, int]) -> None:
    """One STUN Binding request (RFC 5389); returns on a Binding success answer, raises OSError
    (a timeout, a refused port) otherwise."""
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(PROBE_TIMEOUT)
        probe.sendto(bytes(request), address)
        answer = stun.parse_message(probe.recv(2048))
    if answer.transaction_id != request.transaction_id or answer.message_class != stun.Class.RESPONSE:
        raise ConnectionError(f"not a Binding answer: {answer}")


def _die_with_parent() -> list[str]:
    """A command prefix that has the kernel SIGKILL turnserver when the thread that started it ends
    (setpriv execs it: the pid stays turnserver's), so a test process killed outright leaves no
    server behind."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


# --- the client ---------------------------------------------------------------------------------


def turn_address(url: str) -> tuple[tuple[str, int], str]:
    """((host, port), transport) of a `turn:host:port?transport=udp|tcp` URL."""
    scheme, _, rest = url.partition(":")
    assert scheme == "turn", f"only plain turn: URLs are reachable here, not {url!r}"
    parts = urlsplit(f"turn://{rest}")
    transport = dict(pair.split("=", 1) for pair in parts.query.split("&") if pair).get("transport", "udp")
    return (parts.hostname, parts.port or 3478), transport


async def allocate(url: str, username: str, password: str) -> tuple[str, int]:
    """Allocate a relay on the TURN server of `url` with these credentials (RFC 5766: an Allocate
    request, the server's 401 with realm and nonce, the Allocate again with MESSAGE-INTEGRITY) and
    return the relayed address (XOR-RELAYED-ADDRESS); the allocation is deleted before returning. A
    refusal raises `stun.TransactionFailed` (its `.response.error_code`: 401 for wrong or expired
    credentials)."""
    address, transport = turn_address(url)
    relay, protocol = await asyncio.wait_for(
        turn.create_turn_endpoint(_Receiver, address, username, password, transport=transport), ALLOCATE_TIMEOUT
    )
    relayed = relay.get_extra_info("sockname")
    relay.close()  # a Refresh with lifetime 0, then the socket closes
    await asyncio.wait_for(protocol.closed, ALLOCATE_TIMEOUT)
    return relayed


class _Receiver(asyncio.DatagramProtocol):
    """The protocol on top of an allocation: `closed` resolves once it is deleted."""

    def __init__(self):
        self.closed = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)


@pytest.fixture(scope="module")
def turn_server():
    """One coturn for the test module that imports this fixture, stopped at its end."""
    with TurnServer() as server:
        yield server


@atexit.register
def _stop_leftovers() -> None:
    """If the test process ends abnormally, no turnserver outlives it."""
    for server in list(_running):
        server.stop()

