"""`upload`: attachments through the server. `--uploads` clients, each an account, upload
`--size-mib` of random bytes at a time as Signal Desktop does (an upload form from the API, then one
tus creation-with-upload POST carrying the whole body, streamed), over and over until `--seconds`
have passed or MAX_TOTAL_BYTES are sent; then a few are downloaded again and their digests checked.

Reported: MB/s through the server (10^6 bytes uploaded / wall time, from the first form request to
the last upload's answer), each upload's p50 and max seconds (form and POST), the server's RSS idle
just before and at its peak during the uploads (its process tree's VmRSS every 50 ms), and the CPU
of the server, the object store, this client and the whole machine (other work shows there).

Like `push`, this scenario starts what it measures, because the server must be pointed at a store:
a SeaweedFS S3 server (tests/s3.py) or, with `--local-store`, a folder (MEDIA_ROOT) in a temporary
directory; then the Procfile's web line (one uvicorn worker) on a free port, on a database of its
own that it drops and migrates again each run (`--database-url`, default
signalserver_bench_upload) and a Redis database it empties (`--redis-url`, default db 10). The
accounts are registered through the API and the attachment, verification and message limits
raised with `manage.py ratelimit set` first.

`--with-relay`: what upload traffic costs messaging. After the uploads alone, the `relay` scenario
runs alone for `--seconds` (`--pairs`, `--window`, `--sealed`), then again while the uploads run;
delivered msg/s alone and during the uploads are reported. Relay runs as `python -m bench relay` in
a process of its own, so that its sockets do not share an event loop with the uploads' streaming.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.client import register_many, require_loopback
from bench.scenarios.push import PROJECT, _free_port, _procfile, _recreate_database, _start, _stop, _until_live
from bench.stats import ProcessMeter, percentile, rss_bytes

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/signalserver_bench_upload"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/10"
MiB = 1024 * 1024
MAX_SIZE_MIB = 100  # the server's ATTACHMENT_MAX_BYTES
MAX_UPLOADS = 32  # concurrent clients
MAX_TOTAL_BYTES = 8 * 1024 * MiB  # per phase, whatever --seconds allows (the store keeps them all)
CHUNK = MiB  # what the client hands its socket at a time
SLACK = 64 * 1024  # each upload starts at another offset of one random buffer: distinct bytes
UPLOAD_TIMEOUT = 300.0  # one upload, form to answer
RELAY_SETUP_SECONDS = 120.0  # relay's registrations, sockets and warm-up, beyond its --seconds
START_SECONDS = 60.0  # migrate, then the web server answers
SAMPLE_SECONDS = 0.05
DOWNLOAD_CHECKS = 3
WARM_UP_BYTES = MiB
TUS = {"Tus-Resumable": "1.0.0"}
OFFSET_TYPE = "application/offset+octet-stream"
# What the bench client may do to the server: the accounts are registered from one address, and
# every account uploads far more than a person would.
RATE_LIMITS = {
    "attachmentCreate": (1_000_000, 0.001),
    # In bytes: "1000000 0.001" would *lower* this one (the default is 10^9 bytes, 10^6 a second).
    "attachmentCreateBytes": (10**13, 10**-9),
    "verificationSessionPerIp": (1_000_000, 0.001),
    "verificationCodePerIp": (1_000_000, 0.001),
    "messages": (1_000_000, 0.001),
}


# --- measuring -------------------------------------------------------------------------------


class _PeakRss:
    """The highest RSS of a process tree, sampled every SAMPLE_SECONDS on a thread of its own
    (the event loop is busy streaming)."""

    def __init__(self, pids: list[int]):
        self.pids, self.peak, self.samples = pids, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, rss_bytes(self.pids))
            self.samples += 1
            if self._stop.wait(SAMPLE_SECONDS):
                return

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


class _Cpu:
    """CPU over a phase: the server's tree, the store's, this process's and the machine's."""

    def __init__(self, server_pid: int, store_pid: int | None):
        self.server = ProcessMeter([server_pid])
        self.store = ProcessMeter([store_pid]) if store_pid else None
        self.client = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
        self.machine = _machine_cpu()
        self.load = os.getloadavg()[0]

    def report(self, elapsed: float) -> dict:
        busy, total = _machine_cpu()
        client = sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - self.client
        return {
            "server_cpu_percent": self.server.report(elapsed).get("server_cpu_percent"),
            "store_cpu_percent": self.store.report(elapsed).get("server_cpu_percent") if self.store else None,
            "bench_client_cpu_percent": round(100 * client / elapsed, 1),
            # Of all cores together (100 = every core busy), whoever used them.
            "machine_cpu_busy_percent": round(100 * (busy - self.machine[0]) / max(total - self.machine[1], 1), 1),
            "loadavg_1m_before": round(self.load, 2),
        }


# --- the uploads ------------------------------------------------------------------------------


class _Uploads:
    """Clients that upload `size` bytes at a time, each from one random buffer at an offset of its
    own; `expected(index)` is the SHA-256 an upload's bytes must have."""

    def __init__(self, url: str, accounts: list, size: int):
        self.url, self.accounts, self.size = url, accounts, size
        self.data = memoryview(os.urandom(size + SLACK))  # the only copy of the bytes
        self.count = itertools.count()

    def _view(self, index: int) -> memoryview:
        start = (index * 4099) % SLACK
        return self.data[start : start + self.size]

    def expected(self, index: int) -> str:
        return hashlib.sha256(self._view(index)).hexdigest()

    async def _body(self, view: memoryview):
        for start in range(0, len(view), CHUNK):
            yield view[start : start + CHUNK]

    async def _one(self, http: httpx.AsyncClient, account, index: int) -> tuple[str, float]:
        started = time.monotonic()
        response = await http.get(
            f"{self.url}/v4/attachments/form/upload", params={"uploadLength": self.size}, headers={"Authorization": account.authorization}
        )
        response.raise_for_status()
        form = response.json()
        require_loopback(form["signedUploadLocation"])
        headers = {
            **form["headers"],
            **TUS,
            "Upload-Length": str(self.size),
            "Content-Type": OFFSET_TYPE,
            "Content-Length": str(self.size),  # as Desktop sends it: no chunked encoding
        }
        response = await http.post(form["signedUploadLocation"], content=self._body(self._view(index)), headers=headers)
        if response.status_code != 201 or response.headers.get("Upload-Offset") != str(self.size):
            raise RuntimeError(f"upload answered {response.status_code} {response.headers.get('Upload-Offset')!r}: {response.text[:200]}")
        return form["key"], time.monotonic() - started

    async def run(self, stop: asyncio.Event, deadline: float) -> dict:
        """Each client uploads once, then again until `stop` is set, `deadline` (time.monotonic())
        passes or MAX_TOTAL_BYTES are under way; in-flight uploads end on their own (each bounded
        by UPLOAD_TIMEOUT)."""
        results: list[tuple[int, str, float]] = []  # (index, key, seconds)
        state = {"reserved": 0, "errors": 0, "error": "", "stopped_by": "time"}

        async def client(account) -> None:
            async with httpx.AsyncClient(timeout=httpx.Timeout(120.0)) as http:
                for done in itertools.count():  # one upload at least, then while there is time
                    if done and (stop.is_set() or time.monotonic() >= deadline):
                        return
                    if state["reserved"] + self.size > MAX_TOTAL_BYTES:
                        state["stopped_by"] = "bytes"
                        return
                    state["reserved"] += self.size
                    index = next(self.count)
                    try:
                        key, seconds = await asyncio.wait_for(self._one(http, account, index), UPLOAD_TIMEOUT)
                    except Exception as error:  # noqa: BLE001 - counted and shown; this client stops
                        state["errors"] += 1
                        state["error"] = state["error"] or f"{type(error).__name__}: {error}"[:300]
                        return
                    results.append((index, key, seconds))

        started = time.monotonic()
        await asyncio.gather(*(client(account) for account in self.accounts))
        elapsed = time.monotonic() - started
        if stop.is_set() and state["stopped_by"] == "time":
            state["stopped_by"] = "relay ended"
        seconds = [item[2] for item in results]
        uploaded = len(results) * self.size
        return {
            "results": results,
            "elapsed": elapsed,
            "summary": {
                "uploads_done": len(results),
                "upload_errors": state["errors"],
                **({"first_upload_error": state["error"]} if state["error"] else {}),
                "uploaded_mib": round(uploaded / MiB, 1),
                "wall_seconds": round(elapsed, 2),
                "upload_mb_per_second": round(uploaded / 1e6 / elapsed, 1) if elapsed else 0,
                "upload_p50_s": round(percentile(seconds, 50), 2),
                "upload_max_s": round(max(seconds, default=0.0), 2),
                "stopped_by": state["stopped_by"],
            },
        }

    async def check(self, results: list[tuple[int, str, float]]) -> dict:
        """Download the first, a middle and the last upload and compare their digests."""
        picked = sorted({0, len(results) // 2, len(results) - 1}) if results else []
        picked = [results[i] for i in picked][:DOWNLOAD_CHECKS]
        good, downloaded, spent = 0, 0, 0.0
        async with httpx.AsyncClient(timeout=httpx.Timeout(120.0)) as http:
            for index, key, _ in picked:
                started = time.monotonic()
                location = f"{self.url}/attachments/{key}"
                for _hop in range(2):  # the server, then (S3) the signed URL it redirects to
                    require_loopback(location)
                    digest, size = hashlib.sha256(), 0
                    async with http.stream("GET", location) as response:
                        if response.status_code in (301, 302, 303, 307, 308):
                            location = response.headers["Location"]
                            continue
                        response.raise_for_status()
                        async for chunk in response.aiter_bytes(CHUNK):
                            digest.update(chunk)
                            size += len(chunk)
                    break
                spent += time.monotonic() - started
                downloaded += size
                good += size == self.size and digest.hexdigest() == self.expected(index)
        return {
            "downloads_checked": len(picked),
            "downloads_digest_ok": good,
            "download_mb_per_second": round(downloaded / 1e6 / spent, 1) if spent else 0,
        }


async def _upload_phase(uploads: _Uploads, server_pid: int, store_pid: int | None, stop: asyncio.Event, deadline: float) -> dict:
    idle = rss_bytes([server_pid])
    cpu = _Cpu(server_pid, store_pid)
    with _PeakRss([server_pid]) as peak:
        outcome = await uploads.run(stop, deadline)
    await asyncio.sleep(1.0)  # what the server keeps once the uploads are over
    return {
        "results": outcome["results"],
        "summary": {
            **outcome["summary"],
            "server_rss_idle_mib": round(idle / MiB, 1),
            "server_rss_peak_mib": round(peak.peak / MiB, 1),
            "server_rss_after_mib": round(rss_bytes([server_pid]) / MiB, 1),
            "rss_samples": peak.samples,
            **cpu.report(outcome["elapsed"]),
        },
    }


# --- relay, in a process of its own ---------------------------------------------------------


async def _relay(args, url: str, server_pid: int, first_number: int) -> dict:
    command = [
        sys.executable, "-m", "bench", "relay", "--url", url, "--code", args.code, "--seconds", str(args.seconds),
        "--pairs", str(args.pairs), "--window", str(args.window), "--server-pid", str(server_pid),
        "--first-number", str(first_number), *(["--sealed"] if args.sealed else []),
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *command, cwd=PROJECT, stdin=subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), args.seconds + RELAY_SETUP_SECONDS)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    lines = stdout.decode().strip().splitlines()
    if process.returncode != 0 or not lines:
        raise SystemExit(f"relay failed ({process.returncode}): {stderr.decode()[-2000:]}")
    return json.loads(lines[-1])


# --- setting up -------------------------------------------------------------------------------


def _manage(env: dict, *arguments: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", *arguments], cwd=PROJECT, env=env, check=True, timeout=START_SECONDS, stdout=subprocess.DEVNULL
    )


async def run(args) -> dict:
    if not 0 < args.size_mib <= MAX_SIZE_MIB:
        raise SystemExit(f"--size-mib must be more than 0 and at most {MAX_SIZE_MIB}")
    if not 0 < args.uploads <= MAX_UPLOADS:
        raise SystemExit(f"--uploads must be between 1 and {MAX_UPLOADS}")
    size = int(args.size_mib * MiB)
    database_url, redis_url = args.database_url, args.redis_url
    for url in (database_url, redis_url):
        require_loopback(url.replace("postgres://", "http://").replace("redis://", "http://"))
    directory = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    log = open(directory / "server.log", "ab")
    s3 = web = None
    try:
        port = _free_port()
        env = {
            key: value for key, value in os.environ.items() if not key.startswith("MEDIA_") and key != "ATTACHMENTS_CDN3_URL"
        }
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "signalserver.settings",
                "SIGNALSERVER_ENV": "development",
                "DEBUG": "false",
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_url,
                "CELERY_TASK_ALWAYS_EAGER": "false",
                "VERIFICATION_SENDER": "development",
                "DEV_VERIFICATION_CODE": args.code,
                "LOG_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1",
                "WEB_HOST": "127.0.0.1",
                "WEB_PORT": str(port),
                "WEB_WORKERS": "1",
            }
        )
        if args.local_store:
            env["MEDIA_ROOT"] = str(directory / "media")
        else:
            from tests.s3 import S3Server

            # Started from this (the main) thread: the kernel kills weed when its starting thread ends.
            s3 = S3Server(bucket="bench-media").start()
            env.update(
                {
                    "MEDIA_S3_BUCKET": s3.bucket,
                    "MEDIA_S3_ENDPOINT_URL": s3.endpoint_url,
                    "MEDIA_S3_ACCESS_KEY_ID": s3.access_key,
                    "MEDIA_S3_SECRET_ACCESS_KEY": s3.secret_key,
                    "MEDIA_S3_REGION": s3.region,
                }
            )
        _recreate_database(database_url)
        _manage(env, "migrate", "-v", "0")
        subprocess.run(["redis-cli", "-u", redis_url, "FLUSHDB"], check=True, stdout=subprocess.DEVNULL, timeout=30)
        for name, (bucket, seconds) in RATE_LIMITS.items():
            _manage(env, "ratelimit", "set", name, str(bucket), repr(seconds))
        web = _start(_procfile("web"), env, log)
        url = f"http://127.0.0.1:{port}"
        await _until_live(url, web, time.monotonic() + START_SECONDS)
        store_pid = s3.pid if s3 else None

        accounts = await register_many(url, args.uploads, args.code, first_number=args.first_number)
        uploads = _Uploads(url, accounts, size)
        summary: dict = {"store": "local folder" if args.local_store else "S3 (SeaweedFS)", "uploads": args.uploads, "size_mib": args.size_mib}

        # Warm-up, not measured: one small upload per client (the store's clients, the threads).
        warm_up = _Uploads(url, accounts, WARM_UP_BYTES)
        warmed = await warm_up.run(asyncio.Event(), time.monotonic())
        if warmed["summary"]["upload_errors"] or not warmed["results"]:
            raise SystemExit(f"the warm-up uploads failed: {warmed['summary']}")
        del warm_up
        await asyncio.sleep(1.0)

        # 1. The uploads alone.
        alone = await _upload_phase(uploads, web.pid, store_pid, asyncio.Event(), time.monotonic() + args.seconds)
        summary.update(alone["summary"])
        results = alone["results"]

        if args.with_relay:
            # 2. Relay alone, then 3. relay while the uploads run (until relay is done).
            relay_alone = await _relay(args, url, web.pid, args.first_number + 1000)
            stop = asyncio.Event()
            relay_task = asyncio.ensure_future(_relay(args, url, web.pid, args.first_number + 2000))
            relay_task.add_done_callback(lambda _: stop.set())
            deadline = time.monotonic() + args.seconds + RELAY_SETUP_SECONDS
            during = await _upload_phase(uploads, web.pid, store_pid, stop, deadline)
            relay_during = await relay_task
            alone_rate, during_rate = relay_alone["delivered_per_second"], relay_during["delivered_per_second"]
            summary.update(
                {
                    "relay_pairs": args.pairs,
                    "relay_sealed": args.sealed,
                    "relay_alone_delivered_per_second": alone_rate,
                    "relay_during_uploads_delivered_per_second": during_rate,
                    "relay_change_percent": round(100 * (during_rate - alone_rate) / alone_rate, 1) if alone_rate else None,
                    "relay_alone_server_cpu_percent": relay_alone.get("server_cpu_percent"),
                    "relay_during_server_cpu_percent": relay_during.get("server_cpu_percent"),
                    "relay_send_errors": relay_alone["send_errors"] + relay_during["send_errors"],
                    **{f"during_{key}": value for key, value in during["summary"].items()},
                }
            )
            results = results + during["results"]

        summary.update(await uploads.check(results))
        summary["log"] = str(directory / "server.log")
        return summary
    finally:
        if web is not None:
            _stop(web)
        if s3 is not None:
            s3.stop()
        log.close()
        shutil.rmtree(directory / "media", ignore_errors=True)

