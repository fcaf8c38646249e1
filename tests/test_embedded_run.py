"""Embedded run: the server on the defaults `make run` serves with (no DATABASE_URL, no REDIS_URL:
a SQLite file, the in-memory channel layer, process-local rate-limit buckets and presence, eager
Celery) registers accounts and delivers messages end to end.

The rest of the suite runs on PostgreSQL and Redis, so nothing else would notice a send that only
works there (raw SQL, a Redis-only code path). Here everything runs in subprocesses whose
environment holds neither URL, as after a fresh checkout:

- `manage.py migrate --noinput` and `manage.py sealed_sender development` (the steps of `make run`)
  succeed on an empty SQLite file, and the settings chose every embedded backend;
- the real ASGI server (daphne, tests/servers.py) on a free loopback port registers two accounts
  over HTTP with real keys and the development verification code, and issues a sender certificate
  that verifies against the development trust root the command printed;
- a message sent over HTTP (`PUT /v1/messages/{aci}`) and one tunnelled over the sender's own
  socket both reach the recipient's socket, stay queued in the SQLite file until acknowledged, and
  each acknowledgement sends the sender a server delivery receipt;
- a send addressing a device the recipient does not have is refused with 409 and the
  missingDevices/extraDevices body, and queues nothing.

The SQLite file lives in the test's temporary directory: a settings module there imports the
project's settings unchanged and only moves `DATABASES["default"]["NAME"]` out of the checkout
(settings.py has no other way to place it without setting DATABASE_URL). The backends are checked
with `manage.py shell` on the environment the server then runs with. The test process itself does
not touch the test database (no django_db). Every wait is bounded; only 127.0.0.1 is used.
"""

import base64
import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import httpx
import pytest

from messaging.envelopes import SERVER_DELIVERY_RECEIPT, parse_envelope
from messaging.sealing import load_keys, parse_keys, unseal
from signalserver.proto.sealed_sender_pb2 import SenderCertificate, ServerCertificate
from tests.live_clients import MESSAGE_PATH, ChatSocket, register_account
from tests.messaging.helpers import message_list
from tests.messaging.test_end_to_end import guid_of, send_over_http, send_over_socket
from tests.messaging.test_sealed_sender import xeddsa_verify
from tests.servers import DEV_CODE, PROJECT, START_ATTEMPTS, START_TIMEOUT, ServerDidNotStart, ServerProcess, free_port

WAIT = 5.0  # seconds any single frame, request or close may take before the test fails
COMMAND_TIMEOUT = 60.0  # a manage.py command on an empty SQLite file (migrate: every migration)

SETTINGS_MODULE = "embedded_settings"
SETTINGS_SOURCE = """\
# The project's settings as `make run` gets them; only the SQLite file and the media folder move
# out of the checkout.
from signalserver.settings import *  # noqa: F403

DATABASES["default"]["NAME"] = {database!r}  # noqa: F405
STORAGES["media"]["OPTIONS"]["location"] = {media!r}  # noqa: F405
QUEUE_KEYS_FILE = {queue_keys!r}
"""

# What the settings must have chosen without DATABASE_URL and REDIS_URL, printed by `manage.py shell`.
BACKENDS_SCRIPT = """\
import json
from django.conf import settings
from messaging.presence import get_presence
from signalserver import ratelimit
print(json.dumps({
    "database": [settings.DATABASES["default"]["ENGINE"], str(settings.DATABASES["default"]["NAME"])],
    "redis": settings.REDIS_URL,
    "channel_layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "celery_eager": settings.CELERY_TASK_ALWAYS_EAGER,
    "celery_broker": settings.CELERY_BROKER_URL,
    "rate_limit_buckets": type(ratelimit.buckets()).__name__,
    "presence": type(get_presence()).__name__,
    "media": settings.STORAGES["media"]["BACKEND"],
}))
"""


def embedded_environment(directory: Path) -> dict[str, str]:
    """A fresh environment, not a copy of this process's: it holds the test suite's DATABASE_URL,
    REDIS_URL and CELERY_TASK_ALWAYS_EAGER, none of which `make run` has. Only what a developer
    sets to try the server (the development verification code) is added."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(directory),
        "PYTHONPATH": os.pathsep.join([str(directory), str(PROJECT)]),
        "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
        "SIGNALSERVER_ENV": "development",
        "VERIFICATION_SENDER": "development",
        "DEV_VERIFICATION_CODE": DEV_CODE,
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }


def manage(env: dict[str, str], *args: str) -> str:
    """Run `manage.py *args` in the checkout (bounded); its stdout, or a failure with its output."""
    try:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=PROJECT,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
    except subprocess.TimeoutExpired as timeout:
        pytest.fail(f"manage.py {args[0]} did not finish within {COMMAND_TIMEOUT:.0f} s: {timeout.output}")
    assert done.returncode == 0, f"manage.py {args[0]} exited with {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout


def start_server(env: dict[str, str]) -> ServerProcess:
    """One daphne process on a free port, live; another port if this one was taken meanwhile."""
    deadline = time.monotonic() + START_TIMEOUT
    for attempt in range(1, START_ATTEMPTS + 1):
        server = ServerProcess(free_port(), env)
        try:
            server.wait_until_live(deadline)
            return server
        except ServerDidNotStart as failure:
            server.kill()
            if not failure.port_taken or attempt == START_ATTEMPTS:
                raise


@contextmanager
def embedded_run(directory: Path) -> Iterator[tuple[ServerProcess, Path, bytes]]:
    """(server, SQLite file, sealed-sender trust root): the steps of `make run` in `directory`, then
    the server on the same settings; stopped on exit, its output attached to any exception that
    leaves the block."""
    database = directory / "db.sqlite3"
    media = directory / "media"
    (directory / f"{SETTINGS_MODULE}.py").write_text(SETTINGS_SOURCE.format(database=str(database), media=str(media), queue_keys=str(directory / "queue.keys")))
    env = embedded_environment(directory)
    checkout_database = PROJECT / "db.sqlite3"
    checkout_had_database = checkout_database.exists()

    # Checked before migrating: a wrong choice must not write into a database outside `directory`.
    printed = manage(env, "shell", "--no-imports", "-c", BACKENDS_SCRIPT)
    assert json.loads(printed.strip().splitlines()[-1]) == {
        "database": ["django.db.backends.sqlite3", str(database)],
        "redis": "",
        "channel_layer": "channels.layers.InMemoryChannelLayer",
        "celery_eager": True,
        "celery_broker": "memory://",
        "rate_limit_buckets": "LocalBuckets",
        "presence": "LocalPresence",
        "media": "django.core.files.storage.FileSystemStorage",
    }
    manage(env, "migrate", "--noinput", "-v", "0")
    created = manage(env, "sealed_sender", "development").strip()
    assert created.startswith("created a development sealed-sender trust root: "), created
    trust_root = base64.b64decode(created.rsplit(" ", 1)[-1])
    assert database.is_file()

    server = start_server(env)
    try:
        yield server, database, trust_root
    except Exception as failure:
        failure.add_note(f"--- output of {server!r} ---\n{server.output(2000)}")
        raise
    finally:
        server.stop()
    assert checkout_database.exists() == checkout_had_database  # nothing wrote into the checkout


def queued_guids(database: Path, aci: str) -> set[uuid.UUID]:
    """The server's queue for an account, read from its SQLite file (UUIDs are 32 hex digits there)
    and opened with the queue key the development run made for itself, readable by its owner only."""
    key_file = database.parent / "queue.keys"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    keys = load_keys(parse_keys(key_file.read_text(), source="the run's key file"))
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=WAIT)) as db:
        rows = db.execute(
            "SELECT q.device_id, q.key_id, q.envelope FROM messaging_queuedmessage q"
            " JOIN accounts_device d ON d.id = q.device_id WHERE d.account_id = ?",
            [uuid.UUID(aci).hex],
        ).fetchall()
    envelopes = [parse_envelope(unseal(key_id, sealed, device_pk=device_pk, keys=keys)[0]) for device_pk, key_id, sealed in rows]
    return {uuid.UUID(bytes=envelope.server_guid) for envelope in envelopes}


async def test_the_embedded_defaults_register_deliver_receipt_and_check_devices(tmp_path):
    with embedded_run(tmp_path) as (server, database, trust_root):
        await exchange_messages(server, database, trust_root)
        await share_an_attachment(server, tmp_path / "media")


async def share_an_attachment(server: ServerProcess, media: Path) -> None:
    """An attachment uploaded over tus lands in the local media folder and downloads with Range."""
    carol = await register_account(server.url, number="+12015550103")
    data = os.urandom(100_000)
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
        form = (await http.get("/v4/attachments/form/upload", params={"uploadLength": len(data)}, headers={"Authorization": carol.authorization})).json()
        headers = {**form["headers"], "Tus-Resumable": "1.0.0", "Upload-Length": str(len(data)), "Content-Type": "application/offset+octet-stream"}
        created = await http.post(form["signedUploadLocation"], content=data, headers=headers)
        assert (created.status_code, created.headers["Upload-Offset"]) == (201, str(len(data))), created.text
        ranged = await http.get(f"/attachments/{form['key']}", headers={"Range": "bytes=10-"})
    assert (ranged.status_code, ranged.content) == (206, data[10:])
    assert (media / "attachments" / form["key"]).read_bytes() == data


async def exchange_messages(server: ServerProcess, database: Path, trust_root: bytes) -> None:
    alice = await register_account(server.url, number="+12015550101")
    bob = await register_account(server.url, number="+12015550102")

    # The development keys `sealed_sender development` stored in SQLite sign sender certificates.
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
        issued = await http.get("/v1/certificate/delivery", headers={"Authorization": alice.authorization})
    assert issued.status_code == 200, issued.text
    certificate = SenderCertificate.FromString(base64.b64decode(issued.json()["certificate"]))
    inner = SenderCertificate.Certificate.FromString(certificate.certificate)
    assert (inner.sender_uuid_string, inner.sender_device) == (alice.aci, 1)
    signer = inner.signer_certificate
    assert xeddsa_verify(trust_root, signer.certificate, signer.signature)
    server_key = ServerCertificate.Certificate.FromString(signer.certificate).key
    assert xeddsa_verify(server_key, certificate.certificate, certificate.signature)

    async with await ChatSocket.connect(server.ws_url, alice.authorization, timeout=WAIT) as alice_ws:
        async with await ChatSocket.connect(server.ws_url, bob.authorization, timeout=WAIT) as bob_ws:
            assert await alice_ws.backlog(WAIT) == [] and await bob_ws.backlog(WAIT) == []

            for path, content, timestamp in [
                ("http", b"sent over HTTP", 1_700_000_000_001),
                ("socket", b"sent over the socket", 1_700_000_000_002),
            ]:
                if path == "http":
                    await send_over_http(
                        server.url, alice.authorization, bob.aci, bob.registration_id, content, timestamp
                    )
                else:
                    await send_over_socket(alice_ws, bob.aci, bob.registration_id, content, timestamp, timeout=WAIT)

                delivery = await bob_ws.next_request(WAIT)
                assert (delivery.verb, delivery.path) == ("PUT", MESSAGE_PATH), path
                envelope = parse_envelope(delivery.body)
                assert (envelope.content, envelope.client_timestamp) == (content, timestamp), path
                assert envelope.source_service_id_text == alice.aci and envelope.source_device == 1
                assert queued_guids(database, bob.aci) == {guid_of(delivery)}  # in SQLite until acknowledged

                # The ack deletes the row and queues the receipt; the in-memory layer carries it to Alice.
                await bob_ws.ack(delivery)
                receipt_request = await alice_ws.next_request(WAIT)
                receipt = parse_envelope(receipt_request.body)
                assert (receipt.type, receipt.client_timestamp) == (SERVER_DELIVERY_RECEIPT, timestamp), path
                assert (receipt.source_service_id_text, receipt.source_device) == (bob.aci, 1)
                assert not receipt.HasField("content")
                await alice_ws.ack(receipt_request)
                assert queued_guids(database, bob.aci) == set()

            # Bob has device 1 only: addressing device 2 is refused before anything is stored.
            wrong_device = message_list([(2, bob.registration_id)], content=b"to nobody", timestamp=3)
            async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
                refused = await http.put(
                    f"/v1/messages/{bob.aci}", json=wrong_device, headers={"Authorization": alice.authorization}
                )
            assert refused.status_code == 409, refused.text
            assert refused.json() == {"missingDevices": [1], "extraDevices": [2]}
            await bob_ws.expect_no_request(0.3)
            assert queued_guids(database, bob.aci) == set()
