"""A local APNs: Apple's provider API (HTTP/2 over TLS, `POST /3/device/<token>`) with token auth.

Checks a request the way APNs does and answers like it: 200 with an `apns-id` header and no body;
on refusal the status with `{"reason": ...}` (and `"timestamp"` for 410 `Unregistered`), e.g. 403
`InvalidProviderToken` for a JWT not signed by the configured key, kid or team, 400
`TopicDisallowed`, `InvalidPushType`, `BadPriority`, 413 `PayloadTooLarge`. Failures can be
programmed per token (`unregister`, `bad_device_token`) or for the next requests (`fail_next`),
and the whole service can go away and come back (`stop_accepting`, `resume_accepting`).

Runs on its own asyncio loop in a background thread, on 127.0.0.1 and a free port, with a
certificate for 127.0.0.1 and localhost signed by a CA made at start (`ca_file`, `ssl_context()`).
It speaks HTTP/2 through `h2` directly and answers many concurrent streams on one connection, as
clients multiplex their pushes. Use as a context manager or through the `apns_server` fixture.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import re
import secrets
import shutil
import ssl
import string
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ConnectionTerminated, DataReceived, RequestReceived, StreamEnded, StreamReset, WindowUpdated
from h2.exceptions import ProtocolError, StreamClosedError
from h2.settings import SettingCodes, Settings

TOPIC = "org.example.signal"
PATH = re.compile(r"^/3/device/(?P<token>[^/?]*)$")
PUSH_TYPES = {"alert", "background", "voip"}
MAX_PAYLOAD = {"voip": 5120}  # bytes; 4096 for every other push type
MAX_PAYLOAD_DEFAULT = 4096
MAX_COLLAPSE_ID = 64  # bytes
PROVIDER_TOKEN_TTL = 3600  # seconds: APNs refuses a JWT issued longer ago (ExpiredProviderToken)
# APNs lets a client run about a thousand streams at once on a connection; h2's default of 100
# would refuse the streams aioapns opens before it has read our SETTINGS.
MAX_CONCURRENT_STREAMS = 1000


# --- Provider credentials ---------------------------------------------------------------------


@dataclass(frozen=True)
class ApnsCredentials:
    """A provider's token-signing key as Apple hands it out: the .p8 (PKCS#8 PEM of a P-256
    key), its 10-character key id and the team id; plus the app's topic (bundle id)."""

    key_pem: str  # the .p8, for the client
    public_key: ec.EllipticCurvePublicKey  # for the fake
    key_id: str
    team_id: str
    topic: str = TOPIC

    def write_p8(self, directory: str | Path) -> Path:
        """Write the .p8 as `AuthKey_<key id>.p8` (Apple's file name) in `directory`; its path."""
        path = Path(directory) / f"AuthKey_{self.key_id}.p8"
        path.write_text(self.key_pem)
        return path


def _apple_id() -> str:
    return "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(10))


def make_apns_credentials(topic: str = TOPIC) -> ApnsCredentials:
    """A fresh ES256 key pair with a random key id and team id."""
    private_key = ec.generate_private_key(ec.SECP256R1())
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return ApnsCredentials(pem, private_key.public_key(), _apple_id(), _apple_id(), topic)


def _public_key(key) -> ec.EllipticCurvePublicKey:
    """A public key, from a key object or the PEM of a public key or of the .p8 private key."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key
    data = key.encode() if isinstance(key, str) else key
    if b"PRIVATE KEY" in data:
        return serialization.load_pem_private_key(data, password=None).public_key()
    return serialization.load_pem_public_key(data)


# --- TLS ----------------------------------------------------------------------------------------


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=signs_certificates, crl_sign=signs_certificates,
        encipher_only=False, decipher_only=False,
    )


def _make_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate it signs, for 127.0.0.1 and localhost: (ca, cert, key) PEMs.
    A separate CA rather than one self-signed leaf, so that strict verification (Python 3.13's
    default VERIFY_X509_STRICT) accepts it too."""
    now = datetime.datetime.now(datetime.timezone.utc)
    valid_from, valid_to = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=2)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signalserver tests APNs CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    ca_file, cert_file, key_file = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca_file, cert_file, key_file


# --- What the fake records ----------------------------------------------------------------------


@dataclass
class ApnsPush:
    """One push APNs accepted."""

    token: str
    topic: str
    push_type: str
    priority: int | None
    collapse_id: str | None
    expiration: int | None
    apns_id: str
    payload: dict
    headers: dict[str, str]  # every request header, names lower-case
    received_at: float  # time.monotonic()
    connection: int  # which connection it came on (1, 2, … in order of accept)


@dataclass
class ApnsAttempt:
    """Any request, with the answer it got."""

    token: str | None
    status: int
    reason: str | None
    connection: int
    received_at: float


@dataclass
class _Failure:
    status: int
    reason: str
    remaining: int


class _Refusal(Exception):
    def __init__(self, status: int, reason: str, **extra):
        self.status, self.reason, self.extra = status, reason, extra


# --- The fake -----------------------------------------------------------------------------------


class FakeAPNs:
    """A local APNs for one provider key (`key`: its public key, or the PEM of the public key or of
    the .p8), key id, team id and topic. `host`, `port`; trust `ca_file` or use `ssl_context()`."""

    host = "127.0.0.1"

    def __init__(self, *, key, key_id: str, team_id: str, topic: str = TOPIC):
        self.public_key = _public_key(key)
        self.key_id, self.team_id, self.topic = key_id, team_id, topic
        self.credentials: ApnsCredentials | None = None  # set by `with_credentials`
        self.port = 0
        self._cond = threading.Condition()
        self._pushes: list[ApnsPush] = []
        self._attempts: list[ApnsAttempt] = []
        self._unregistered: dict[str, int] = {}  # token -> ms since the epoch
        self._bad_tokens: set[str] = set()
        self._failures: list[_Failure] = []
        self._verified_jwts: dict[str, int] = {}  # token -> iat, once the signature checked out
        self._connection_count = 0
        self._protocols: set[_APNsProtocol] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="fake-apns-"))
        self.ca_file, cert_file, key_file = (str(p) for p in _make_tls_files(self._dir))
        self._server_ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._server_ssl.minimum_version = ssl.TLSVersion.TLSv1_2
        self._server_ssl.load_cert_chain(cert_file, key_file)
        self._server_ssl.set_alpn_protocols(["h2"])

    @classmethod
    def with_credentials(cls, credentials: ApnsCredentials) -> FakeAPNs:
        fake = cls(
            key=credentials.public_key, key_id=credentials.key_id, team_id=credentials.team_id,
            topic=credentials.topic,
        )
        fake.credentials = credentials
        return fake

    # --- lifecycle ---

    @property
    def server(self) -> str:
        """`host:port`, as settings.APNS_SERVER takes it."""
        return f"{self.host}:{self.port}"

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's certificate (offers ALPN h2)."""
        context = ssl.create_default_context(cafile=self.ca_file)
        context.set_alpn_protocols(["h2"])
        return context

    def start(self) -> FakeAPNs:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-apns", daemon=True)
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        if self._loop.is_running():
            self._call(self._shut())
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
        self._loop = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> FakeAPNs:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop_accepting(self) -> None:
        """An outage: stop listening (connecting is refused) and drop every open connection."""
        self._call(self._shut())

    def resume_accepting(self) -> None:
        """Listen again, on the same port."""
        self._call(self._listen())

    def _call(self, coroutine, timeout: float = 10):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    async def _listen(self) -> None:
        self._server = await self._loop.create_server(
            lambda: _APNsProtocol(self), self.host, self.port, ssl=self._server_ssl, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for protocol in list(self._protocols):
            protocol.drop()
        self._protocols.clear()

    # --- programmable failures ---

    def unregister(self, token: str, timestamp_ms: int | None = None) -> None:
        """From now on `token` gets 410 Unregistered with that time (ms since the epoch; now if None)."""
        with self._cond:
            self._unregistered[token] = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms

    def bad_device_token(self, token: str) -> None:
        """From now on `token` gets 400 BadDeviceToken."""
        with self._cond:
            self._bad_tokens.add(token)

    def fail_next(self, n: int = 1, status: int = 429, reason: str = "TooManyRequests") -> None:
        """The next `n` requests get `status` with `reason` (after any failures already queued),
        e.g. (500, "InternalServerError"), (503, "ServiceUnavailable")."""
        with self._cond:
            self._failures.append(_Failure(status, reason, n))

    # --- what was received ---

    @property
    def pushes(self) -> list[ApnsPush]:
        """The pushes accepted so far, in order of arrival (a copy)."""
        with self._cond:
            return list(self._pushes)

    @property
    def attempts(self) -> list[ApnsAttempt]:
        """Every request so far with the status it got, accepted or not (a copy)."""
        with self._cond:
            return list(self._attempts)

    @property
    def connections_accepted(self) -> int:
        with self._cond:
            return self._connection_count

    def pushes_to(self, token: str) -> list[ApnsPush]:
        return [push for push in self.pushes if push.token == token]

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ApnsPush]:
        """Block until at least `count` pushes were accepted; the pushes. AssertionError after
        `timeout` seconds."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._pushes) >= count, timeout):
                raise AssertionError(f"APNs got {len(self._pushes)} pushes in {timeout}s, expected {count}")
            return list(self._pushes)

    def clear(self) -> None:
        with self._cond:
            self._pushes.clear()
            self._attempts.clear()

    # --- the checks (called on the server's loop) ---

    def _new_connection(self, protocol: _APNsProtocol) -> int:
        self._protocols.add(protocol)
        with self._cond:
            self._connection_count += 1
            return self._connection_count

    def _answer(self, connection: int, method: str, path: str, headers: dict[str, str], body: bytes):
        """(status, apns-id, body or None) for one request; records it."""
        now = time.monotonic()
        apns_id = headers.get("apns-id") or str(uuid.uuid4()).upper()
        match = PATH.match(path)
        token = match["token"] if match else None
        try:
            push = self._check(connection, method, match, headers, body, apns_id, now)
        except _Refusal as refusal:
            with self._cond:
                self._attempts.append(ApnsAttempt(token, refusal.status, refusal.reason, connection, now))
            return refusal.status, apns_id, json.dumps({"reason": refusal.reason, **refusal.extra}).encode()
        with self._cond:
            self._attempts.append(ApnsAttempt(token, 200, None, connection, now))
            self._pushes.append(push)
            self._cond.notify_all()
        return 200, apns_id, None

    def _check(self, connection, method, match, headers, body, apns_id, now) -> ApnsPush:
        with self._cond:
            if self._failures:
                failure = self._failures[0]
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.pop(0)
                raise _Refusal(failure.status, failure.reason)
        if method != "POST":
            raise _Refusal(405, "BadMethod")
        if match is None:
            raise _Refusal(404, "BadPath")
        self._check_provider_token(headers.get("authorization"))
        token = match["token"]
        if not token:
            raise _Refusal(400, "MissingDeviceToken")
        if "apns-id" in headers and not _is_uuid(headers["apns-id"]):
            raise _Refusal(400, "BadMessageId")
        push_type = headers.get("apns-push-type")
        if push_type not in PUSH_TYPES:
            raise _Refusal(400, "InvalidPushType")
        topic = headers.get("apns-topic")
        if not topic:
            raise _Refusal(400, "MissingTopic")
        # VoIP pushes go to the app's VoIP topic, `<bundle id>.voip`.
        if topic != (f"{self.topic}.voip" if push_type == "voip" else self.topic):
            raise _Refusal(400, "TopicDisallowed")
        priority = headers.get("apns-priority")
        if priority is not None:
            if priority not in ("5", "10"):
                raise _Refusal(400, "BadPriority")
            priority = int(priority)
        # APNs refuses priority 10 (the default when absent) for background pushes.
        if push_type == "background" and priority != 5:
            raise _Refusal(400, "BadPriority")
        expiration = headers.get("apns-expiration")
        if expiration is not None:
            if not expiration.isdigit():
                raise _Refusal(400, "BadExpirationDate")
            expiration = int(expiration)
        collapse_id = headers.get("apns-collapse-id")
        if collapse_id is not None and len(collapse_id.encode()) > MAX_COLLAPSE_ID:
            raise _Refusal(400, "BadCollapseId")
        if not body:
            raise _Refusal(400, "PayloadEmpty")
        if len(body) > MAX_PAYLOAD.get(push_type, MAX_PAYLOAD_DEFAULT):
            raise _Refusal(413, "PayloadTooLarge")
        try:
            payload = json.loads(body)
        except ValueError:
            raise _Refusal(400, "BadPayload") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
            raise _Refusal(400, "BadPayload")
        if not all(c in string.hexdigits for c in token):
            raise _Refusal(400, "BadDeviceToken")
        with self._cond:
            if token in self._bad_tokens:
                raise _Refusal(400, "BadDeviceToken")
            if token in self._unregistered:
                raise _Refusal(410, "Unregistered", timestamp=self._unregistered[token])
        return ApnsPush(
            token=token, topic=topic, push_type=push_type, priority=priority, collapse_id=collapse_id,
            expiration=expiration, apns_id=apns_id, payload=payload, headers=dict(headers),
            received_at=now, connection=connection,
        )

    def _check_provider_token(self, authorization: str | None) -> None:
        if not authorization:
            raise _Refusal(403, "MissingProviderToken")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _Refusal(403, "InvalidProviderToken")
        iat = self._verified_jwts.get(token)
        if iat is None:
            # Like APNs, verify a provider token once and remember it.
            try:
                header = jwt.get_unverified_header(token)
                claims = jwt.decode(
                    token, self.public_key, algorithms=["ES256"], options={"require": ["iat", "iss"]}
                )
            except jwt.PyJWTError:
                raise _Refusal(403, "InvalidProviderToken") from None
            if header.get("alg") != "ES256" or header.get("kid") != self.key_id or claims["iss"] != self.team_id:
                raise _Refusal(403, "InvalidProviderToken")
            iat = self._verified_jwts[token] = int(claims["iat"])
        if iat < time.time() - PROVIDER_TOKEN_TTL:
            raise _Refusal(403, "ExpiredProviderToken")


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


class _APNsProtocol(asyncio.Protocol):
    """One HTTP/2 connection: collects each stream's headers and body, answers when it ends."""

    def __init__(self, fake: FakeAPNs):
        self.fake = fake
        self.transport: asyncio.Transport | None = None
        self.conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self.conn.local_settings = Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
                SettingCodes.MAX_HEADER_LIST_SIZE: H2Connection.DEFAULT_MAX_HEADER_LIST_SIZE,
            },
        )
        self.streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        self.unsent: dict[int, bytes] = {}  # response bodies waiting for the client's flow window
        self.number = 0

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.number = self.fake._new_connection(self)
        self.conn.initiate_connection()
        self.flush()

    def connection_lost(self, exc) -> None:
        self.fake._protocols.discard(self)

    def drop(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except ProtocolError:
            self.flush()
            self.transport.close()
            return
        for event in events:
            if isinstance(event, RequestReceived):
                self.streams[event.stream_id] = (dict(event.headers), bytearray())
            elif isinstance(event, DataReceived):
                if event.stream_id in self.streams:
                    self.streams[event.stream_id][1].extend(event.data)
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded):
                self.respond(event.stream_id)
            elif isinstance(event, StreamReset):
                self.streams.pop(event.stream_id, None)
                self.unsent.pop(event.stream_id, None)
            elif isinstance(event, WindowUpdated):
                self.send_unsent()
            elif isinstance(event, ConnectionTerminated):
                self.flush()
                self.transport.close()
                return
        self.flush()

    def respond(self, stream_id: int) -> None:
        headers, body = self.streams.pop(stream_id, ({}, b""))
        status, apns_id, answer = self.fake._answer(
            self.number, headers.get(":method", ""), headers.get(":path", ""), headers, bytes(body)
        )
        response_headers = [(":status", str(status)), ("apns-id", apns_id)]
        if answer is not None:
            response_headers += [("content-type", "application/json"), ("content-length", str(len(answer)))]
        try:
            self.conn.send_headers(stream_id, response_headers, end_stream=answer is None)
        except StreamClosedError:
            return
        if answer is not None:
            self.unsent[stream_id] = answer
            self.send_unsent()

    def send_unsent(self) -> None:
        for stream_id, answer in list(self.unsent.items()):
            try:
                if self.conn.local_flow_control_window(stream_id) < len(answer):
                    continue
                self.conn.send_data(stream_id, answer, end_stream=True)
            except StreamClosedError:
                pass
            del self.unsent[stream_id]


# --- pytest fixtures ----------------------------------------------------------------------------


@pytest.fixture
def apns_credentials() -> ApnsCredentials:
    """A fresh provider key, key id and team id (and the default topic)."""
    return make_apns_credentials()


@pytest.fixture
def apns_server(apns_credentials):
    """A started FakeAPNs for `apns_credentials` (also at `apns_server.credentials`)."""
    with FakeAPNs.with_credentials(apns_credentials) as fake:
        yield fake


@pytest.fixture
def apns_settings(apns_server, settings, tmp_path):
    """The server's push settings point at `apns_server` (in this process: Celery runs eagerly in
    the tests); the gateways are built from them afresh, and again after the test."""
    from push import sender

    creds = apns_server.credentials
    settings.APNS_KEY_FILE = str(creds.write_p8(tmp_path))
    settings.APNS_KEY_ID, settings.APNS_TEAM_ID, settings.APNS_TOPIC = creds.key_id, creds.team_id, creds.topic
    settings.APNS_SERVER, settings.APNS_CA_FILE = apns_server.server, str(apns_server.ca_file)
    sender.forget_gateways()
    yield apns_server
    sender.forget_gateways()
