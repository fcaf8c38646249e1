"""`push`: `--devices` offline phones (half APNs, half FCM) each get one sealed-sender message; how
fast one Celery worker wakes them all through the push gateways.

Unlike the other scenarios this one starts what it measures, because the server must be configured
with the push services it talks to: a local APNs and a local FCM (the tests' fakes,
`tests/fakes/apns.py` and `tests/fakes/fcm.py`, in a process of their own so that they don't share
an interpreter with the load), then the Procfile's web line (one uvicorn worker) and its worker line
with `--workers` Celery processes, all on loopback, on a database of its own that it drops and
migrates again each run (`--database-url`). The offline devices are written straight into that
database (registering 10,000 accounts through the API would take minutes and measure
registration); everything measured goes the real way: sealed sends over sockets, the send batches,
the push tasks on the broker, the worker, the gateways' HTTP/2 and HTTP connections.

Reported: how long the sends took, when the last push reached its gateway (after the first send
and after the last send's answer), and pushes per second per worker, counted from the first push
the gateways received to the last."""

from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import websockets

from bench.client import b64, parse_frame, request_frame, require_loopback
from bench.stats import ProcessMeter

PROJECT = Path(__file__).resolve().parents[2]
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/signalserver_bench_push"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/9"
MAX_DEVICES = 50_000
START_SECONDS = 60  # migrate, then the web server and the worker answer
WAIT_SECONDS = 120  # for the last push after the sends
UNIDENTIFIED_SENDER = 6
CONTENT_BYTES = 200


# --- the local push services, in a process of their own -------------------------------------------


def _gateway(conn, directory: str, platform: str) -> None:
    """Run a local APNs or FCM until told to stop: send the settings that point the server at it,
    then answer "count" with how many pushes it got and the first and last arrival
    (time.monotonic(), the same clock in every process); "clear" forgets them first."""
    from tests.fakes.apns import FakeAPNs, make_apns_credentials
    from tests.fakes.fcm import FakeFcm

    if platform == "apn":
        credentials = make_apns_credentials()
        fake = FakeAPNs.with_credentials(credentials)
        settings = lambda: {  # noqa: E731
            "APNS_KEY_FILE": str(credentials.write_p8(directory)),
            "APNS_KEY_ID": credentials.key_id,
            "APNS_TEAM_ID": credentials.team_id,
            "APNS_TOPIC": credentials.topic,
            "APNS_SERVER": fake.server,
            "APNS_CA_FILE": str(fake.ca_file),
        }
        received = lambda: fake.pushes  # noqa: E731
        clear = fake.clear
    else:
        fake = FakeFcm()
        settings = lambda: {  # noqa: E731
            "FCM_CREDENTIALS_FILE": str(fake.write_service_account(Path(directory) / "fcm.json")),
            "FCM_PROJECT_ID": fake.project_id,
            "FCM_API_URL": fake.url,
        }
        received = lambda: list(fake.messages)  # noqa: E731
        clear = fake.messages.clear
    with fake:
        conn.send(settings())
        while (command := conn.recv()) != "stop":
            if command == "clear":
                clear()
            arrivals = [item.received_at for item in received()]
            conn.send({"count": len(arrivals), "first": min(arrivals, default=None), "last": max(arrivals, default=None)})


class _Gateways:
    """The local APNs and FCM, each in a process of its own."""

    def __init__(self, directory: str):
        context = multiprocessing.get_context("spawn")
        self.pipes, self.processes = {}, []
        for platform in ("apn", "fcm"):
            ours, theirs = context.Pipe()
            process = context.Process(target=_gateway, args=(theirs, directory, platform), daemon=True)
            process.start()
            self.pipes[platform] = ours
            self.processes.append(process)
        self.settings = {key: value for pipe in self.pipes.values() for key, value in pipe.recv().items()}

    def arrivals(self, command: str = "count") -> dict:
        """{"apns": n, "fcm": n, "first": t, "last": t} over both."""
        for pipe in self.pipes.values():
            pipe.send(command)
        apns, fcm = (pipe.recv() for pipe in self.pipes.values())
        firsts = [a["first"] for a in (apns, fcm) if a["first"] is not None]
        lasts = [a["last"] for a in (apns, fcm) if a["last"] is not None]
        return {"apns": apns["count"], "fcm": fcm["count"], "first": min(firsts, default=None), "last": max(lasts, default=None)}

    def stop(self) -> None:
        for pipe, process in zip(self.pipes.values(), self.processes, strict=True):
            if process.is_alive():
                pipe.send("stop")
                process.join(timeout=10)
            if process.is_alive():
                process.kill()


# --- the server under test --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _procfile(process_type: str) -> str:
    for line in (PROJECT / "Procfile").read_text().splitlines():
        name, colon, command = line.partition(":")
        if colon and not line.lstrip().startswith("#") and name.strip() == process_type:
            return command.strip()
    raise SystemExit(f"no {process_type}: line in the Procfile")


def _recreate_database(database_url: str) -> None:
    import psycopg

    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    if not name.startswith("signalserver_bench"):
        raise SystemExit(f"refusing to drop {name!r}: bench only recreates signalserver_bench* databases")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def _seed(count: int) -> list[dict]:
    """`count` accounts with one device each, no socket, half with an APNs and half with an FCM
    token: what registration and `PUT /v1/accounts/apn|gcm` leave behind."""
    import django

    django.setup()
    from django.utils import timezone

    from accounts.models import Account, Device, PhoneNumberIdentifier

    now = timezone.now()
    recipients, pnis, accounts, devices = [], [], [], []
    for index in range(count):
        number = f"+1202{5550000 + index:07d}"
        pni, aci, access_key = uuid.uuid4(), uuid.uuid4(), os.urandom(16)
        registration_id = index % 16000 + 1
        pnis.append(PhoneNumberIdentifier(number=number, pni=pni))
        accounts.append(Account(aci=aci, number=number, pni=pni, unidentified_access_key=access_key))
        token = secrets.token_hex(32) if index % 2 == 0 else secrets.token_urlsafe(120)
        devices.append(
            Device(
                account_id=aci, device_id=1, auth_token_hash="-", auth_salt="-", registration_id=registration_id,
                fetches_messages=False, push_token_set_at=now,
                **({"apn_id": token} if index % 2 == 0 else {"gcm_id": token}),
            )
        )
        recipients.append({"aci": str(aci), "access_key": access_key, "registration_id": registration_id})
    PhoneNumberIdentifier.objects.bulk_create(pnis, batch_size=2000)
    Account.objects.bulk_create(accounts, batch_size=2000)
    Device.objects.bulk_create(devices, batch_size=2000)
    return recipients


def _start(command: str, env: dict, log) -> subprocess.Popen:
    # As honcho runs a Procfile line; a process group of its own, so that stopping it stops its
    # children (the worker's pool processes).
    return subprocess.Popen(
        ["bash", "-c", f"exec {command}"], cwd=PROJECT, env=env, stdin=subprocess.DEVNULL, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True,
    )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


async def _until_live(url: str, web: subprocess.Popen, deadline: float) -> None:
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline and web.poll() is None:
            try:
                if (await http.get(f"{url}/health/live")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit("the web server did not come up (see its log)")


# --- the load ------------------------------------------------------------------------------


async def _send_all(url: str, recipients: list[dict], senders: int, window: int) -> tuple[float, float, int]:
    """One urgent sealed-sender message to each recipient, over `senders` unauthenticated sockets
    with `window` sends in flight each; (first send, last answer, refusals)."""
    ws_url = url.replace("http://", "ws://", 1) + "/v1/websocket/"
    content = base64.b64encode(os.urandom(CONTENT_BYTES)).decode()
    pending = list(reversed(recipients))
    refused = 0
    last_answer = 0.0

    async def sender() -> None:
        nonlocal refused, last_answer
        slots = asyncio.Semaphore(window)
        outstanding = 0
        done = asyncio.Event()
        async with websockets.connect(ws_url, max_size=2**22) as ws:

            async def read() -> None:
                nonlocal refused, last_answer, outstanding
                async for data in ws:
                    frame = parse_frame(data)
                    if frame.type != frame.RESPONSE:
                        continue
                    refused += frame.response.status != 200
                    last_answer = time.monotonic()
                    outstanding -= 1
                    slots.release()
                    if outstanding == 0 and not pending:
                        done.set()

            reader = asyncio.ensure_future(read())
            request_id = 0
            while pending:
                await slots.acquire()
                if not pending:
                    slots.release()
                    break
                recipient = pending.pop()
                body = json.dumps(
                    {
                        "messages": [
                            {
                                "type": UNIDENTIFIED_SENDER,
                                "destinationDeviceId": 1,
                                "destinationRegistrationId": recipient["registration_id"],
                                "content": content,
                            }
                        ],
                        "urgent": True,
                    }
                ).encode()
                headers = ["Content-Type:application/json", f"Unidentified-Access-Key:{b64(recipient['access_key'])}"]
                request_id += 1
                outstanding += 1
                await ws.send(request_frame(request_id, "PUT", f"/v1/messages/{recipient['aci']}", body, headers))
            if outstanding:
                await asyncio.wait_for(done.wait(), WAIT_SECONDS)
            reader.cancel()

    started = time.monotonic()
    await asyncio.gather(*(sender() for _ in range(senders)))
    return started, last_answer, refused


async def _arrivals(gateways: _Gateways, expected: int, deadline: float) -> dict:
    """Poll the gateways until `expected` pushes arrived (or the deadline passed)."""
    while True:
        arrived = gateways.arrivals()
        if arrived["apns"] + arrived["fcm"] >= expected or time.monotonic() > deadline:
            return arrived
        await asyncio.sleep(0.05)


async def run(args) -> dict:
    count = min(args.devices, MAX_DEVICES)
    database_url, redis_url = args.database_url, args.redis_url
    for url in (database_url, redis_url):
        require_loopback(url.replace("postgres://", "http://").replace("redis://", "http://"))
    directory = tempfile.mkdtemp(prefix="bench-push-")
    gateways = _Gateways(directory)
    web = worker = None
    log = open(Path(directory) / "server.log", "ab")
    try:
        port = _free_port()
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "signalserver.settings",
            "SIGNALSERVER_ENV": "development",
            "DEBUG": "false",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "LOG_LEVEL": "WARNING",
            "WEB_HOST": "127.0.0.1",
            "WEB_PORT": str(port),
            "WEB_WORKERS": "1",
            "CELERY_CONCURRENCY": str(args.workers),
            **gateways.settings,
        }
        os.environ.update({key: env[key] for key in ("DJANGO_SETTINGS_MODULE", "SIGNALSERVER_ENV", "DATABASE_URL", "REDIS_URL")})
        _recreate_database(database_url)
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=PROJECT, env=env, check=True)
        subprocess.run(["redis-cli", "-u", redis_url, "FLUSHDB"], check=True, stdout=subprocess.DEVNULL)
        recipients = await asyncio.to_thread(_seed, count)
        web = _start(_procfile("web"), env, log)
        worker = _start(_procfile("worker"), env, log)
        url = f"http://127.0.0.1:{port}"
        await _until_live(url, web, time.monotonic() + START_SECONDS)
        await asyncio.sleep(3)  # the worker connects to the broker

        # 1. Live: the worker pushes while the sends arrive.
        meter = ProcessMeter([worker.pid])
        started, answered, refused = await _send_all(url, recipients, args.senders, args.window)
        live = await _arrivals(gateways, count - refused, answered + WAIT_SECONDS)
        last = live["last"] or answered
        live_report = meter.report(max(last - started, 0.001))

        # 2. Backlog: every push task is queued before the worker starts, so the worker's own pace
        # shows (counted from the first push to reach a gateway to the last).
        _stop(worker)
        gateways.arrivals("clear")
        _, _, refused_again = await _send_all(url, recipients, args.senders, args.window)
        worker = _start(_procfile("worker"), env, log)
        deadline = time.monotonic() + START_SECONDS + WAIT_SECONDS
        first = await _arrivals(gateways, 1, deadline)
        meter, metered_from = ProcessMeter([worker.pid]), time.monotonic()
        backlog = await _arrivals(gateways, count - refused_again, deadline)
        metered = time.monotonic() - metered_from
        worker_report = meter.report(metered)
        worker_cpu_seconds = worker_report["server_cpu_percent"] * metered / 100
        metered_pushes = backlog["apns"] + backlog["fcm"] - first["apns"] - first["fcm"]
        drained = backlog["apns"] + backlog["fcm"]
        spread = backlog["last"] - backlog["first"] if drained > 1 else float("nan")
        return {
            "devices": count,
            "workers": args.workers,
            "sends_refused": refused + refused_again,
            "sends_seconds": round(answered - started, 2),
            "pushes_apns": live["apns"],
            "pushes_fcm": live["fcm"],
            "last_push_after_first_send_s": round(last - started, 2),
            "last_push_after_last_answer_s": round(last - answered, 2),
            "worker_cpu_percent_live": live_report.get("server_cpu_percent"),
            "backlog_pushes": drained,
            "backlog_pushes_per_second_per_worker": round(drained / spread / args.workers, 1) if drained > 1 else 0,
            "backlog_worker_cpu_percent": worker_report["server_cpu_percent"],
            "backlog_pushes_per_worker_cpu_second": round(metered_pushes / worker_cpu_seconds, 1) if worker_cpu_seconds else 0,
            "worker_rss_mib": worker_report.get("server_rss_mib"),
            "log": str(Path(directory) / "server.log"),
        }
    finally:
        for process in (worker, web):
            if process is not None:
                _stop(process)
        log.close()
        gateways.stop()
