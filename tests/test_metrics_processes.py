"""The metrics port under the real process model (docs/deployment.md, "Metrics"): the Procfile's web
line with two uvicorn workers, and its worker line (a real Celery worker), with one METRICS_DIR
and METRICS_PORT, as `make serve` runs them.

- The metrics port serves the sum of both uvicorn workers' counts: each worker has counted some of
  the requests, and the port shows exactly how many were made.
- It listens on loopback only; the public port does not serve the metrics (a JSON 404).
- A push sent by the Celery worker, the task's outcome and lag, and the heartbeat task show on the
  same port as the web's figures.

Every wait is bounded; only 127.0.0.1 is used. Process groups are SIGKILLed at the end.
"""

import asyncio
import os
import tempfile
import time
import warnings
from pathlib import Path

import httpx
import pytest
from asgiref.sync import sync_to_async
from celery.exceptions import AlwaysEagerIgnored
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from signalserver import metrics
from signalserver.celery import app as celery_app
from tests.factories import DeviceFactory, device_auth
from tests.fakes.apns import apns_credentials, apns_server  # noqa: F401 (fixtures)
from tests.messaging.test_end_to_end import send_over_http
from tests.push.test_push_delivery import TOKEN, push_environment  # noqa: F401 (fixture)
from tests.servers import START_TIMEOUT, _wait_for_sessions_to_end, answers_live, free_port, procfile_command, server_environment
from tests.test_procfile import ProcfileProcess

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 20.0
FLUSHED = metrics.FLUSH_SECONDS + 0.5  # what the event loops observed is written by then
LIVE = ("signalserver_request_duration_seconds_count", {"transport": "http", "method": "GET", "route": "/health/live", "status": "200"})


class Deployment:
    """The Procfile's web (and worker) lines on free ports, one METRICS_DIR."""

    def __init__(self, *, web_workers: int, **env: str):
        self.metrics_dir = Path(tempfile.mkdtemp(prefix="signalserver-metrics-test-"))
        self.port, self.metrics_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.application_name = f"signalserver-metrics-{os.getpid()}-{self.port}"
        self.env = server_environment(
            WEB_HOST="127.0.0.1", WEB_PORT=str(self.port), WEB_WORKERS=str(web_workers),
            METRICS_DIR=str(self.metrics_dir), METRICS_PORT=str(self.metrics_port), PGAPPNAME=self.application_name,
            **env,
        )  # fmt: skip
        self.processes: list[ProcfileProcess] = []

    def start(self, process_type: str) -> ProcfileProcess:
        process = ProcfileProcess(procfile_command(process_type), self.env)
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in self.processes:
            process.kill()
        _wait_for_sessions_to_end(self.application_name)

    def output(self) -> str:
        return "\n".join(process.output()[-3000:] for process in self.processes)

    def scrape(self) -> dict:
        """{(name, labels): value} from the metrics port."""
        text = httpx.get(self.metrics_url, timeout=5).text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def wait_for_metrics(self) -> None:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.metrics_url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the metrics port did not answer; output:\n{self.output()}")


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def live_counts_per_process(directory: Path) -> dict[str, float]:
    """pid → the /health/live count in that process's own file (METRICS_DIR/<start>/)."""
    counts = {}
    for path in directory.glob("*/histogram_*.db"):
        for family in MultiProcessCollector.merge([str(path)]):
            for sample in family.samples:
                if (sample.name, sample.labels) == LIVE:
                    counts[path.stem.split("_")[1]] = sample.value
    return counts


def listening_addresses(port: int) -> set[str]:
    """The local addresses (hex, as /proc/net shows them) listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


@pytest.fixture
def deployments():
    started: list[Deployment] = []

    def make(**kwargs) -> Deployment:
        deployment = Deployment(**kwargs)
        started.append(deployment)
        return deployment

    yield make
    for deployment in started:
        deployment.stop()


def test_the_metrics_port_sums_two_uvicorn_workers_and_the_public_port_does_not_serve_it(deployments):
    deployment = deployments(web_workers=2)
    web = deployment.start("web")
    assert answers_live(deployment.url, time.monotonic() + START_TIMEOUT, running=lambda: web.process.poll() is None), deployment.output()
    deployment.wait_for_metrics()
    time.sleep(FLUSHED)  # the start-up's polls of /health/live are written
    before = value(deployment.scrape(), LIVE[0], **LIVE[1])

    # New connections until both workers have answered some (the kernel picks the worker).
    made = 0
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for _ in range(20):
            assert httpx.get(f"{deployment.url}/health/live", timeout=5).status_code == 200
            made += 1
        if len([count for count in live_counts_per_process(deployment.metrics_dir).values() if count]) >= 2:
            break
        time.sleep(0.2)
    time.sleep(FLUSHED)
    per_process = live_counts_per_process(deployment.metrics_dir)
    assert len(list(deployment.metrics_dir.iterdir())) == 1  # one start: uvicorn's supervisor and its workers
    assert len([count for count in per_process.values() if count]) == 2, per_process

    after = deployment.scrape()
    assert value(after, LIVE[0], **LIVE[1]) - before == made
    assert value(after, LIVE[0], **LIVE[1]) == sum(per_process.values())
    assert ("signalserver_queue_depth", ()) in after and ("signalserver_queue_oldest_age_seconds", ()) in after

    # Loopback only, and never on the public port.
    assert listening_addresses(deployment.metrics_port) == {"0100007F"}
    for path in ("/metrics", "/"):
        public = httpx.get(f"{deployment.url}{path}", timeout=5)
        assert public.status_code == 404 and public.headers["content-type"] == "application/json", path
        assert "signalserver_" not in public.text


async def test_a_celery_workers_push_task_and_heartbeat_show_on_the_web_metrics_port(
    deployments, apns_server, push_environment  # noqa: F811
):
    alice = await sync_to_async(DeviceFactory)()
    bob = await sync_to_async(DeviceFactory)(apn_id=TOKEN, fetches_messages=False)  # offline: pushed
    deployment = deployments(web_workers=1, CELERY_CONCURRENCY="1", **push_environment)
    web, worker = deployment.start("web"), deployment.start("worker")
    running = lambda: web.process.poll() is None and worker.process.poll() is None  # noqa: E731
    assert await sync_to_async(answers_live)(deployment.url, time.monotonic() + START_TIMEOUT, running=running), deployment.output()
    await sync_to_async(deployment.wait_for_metrics)()
    started = time.time()

    await send_over_http(deployment.url, device_auth(alice), bob.account_id, bob.registration_id, b"hello", 1)
    await sync_to_async(apns_server.wait_for)(1, timeout=WAIT)
    # Published here (send_task never runs eagerly, as the tests' tasks do), run by the worker.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AlwaysEagerIgnored)
        celery_app.send_task("signalserver.tasks.heartbeat_task")

    push_task = "push.tasks.send_new_message_pushes_task"
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        samples = await sync_to_async(deployment.scrape)()
        if value(samples, "signalserver_celery_heartbeat_timestamp_seconds") >= started and value(
            samples, "signalserver_celery_tasks_total", task=push_task, outcome="success"
        ):
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError(f"the worker's figures did not show; output:\n{deployment.output()}")

    assert value(samples, "signalserver_push_notifications_total", platform="apn", outcome="sent") == 1
    assert value(samples, "signalserver_celery_tasks_total", task=push_task, outcome="success") == 1
    assert value(samples, "signalserver_celery_task_lag_seconds_count", task=push_task) == 1
    assert value(samples, "signalserver_celery_tasks_total", task="signalserver.tasks.heartbeat_task", outcome="success") == 1
    assert value(samples, "signalserver_messages_sent_total", type="identified") == 1  # the web's own
    assert len(list(deployment.metrics_dir.iterdir())) == 2  # the web's start and the worker's
