"""The benchmark tool works against a real server: a short, bounded run of each scenario.
(Performance goals are printed by `make bench`, not asserted here.)"""

import json
import subprocess
import sys
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import override_limit
from tests.servers import DEV_CODE, PROJECT, free_port, running_server

pytestmark = pytest.mark.django_db(transaction=True)


def raise_limits_for_a_load_test(*limiters: str) -> None:
    """What an operator does before a load test: the limits a few clients hammering each other
    hit, and the per-address verification limits (every benchmark account registers from here)."""
    for limiter in (*limiters, "verificationSessionPerIp", "verificationCodePerIp"):
        override_limit(limiter, 10**6, 0.001)


def run_bench(url: str, *args: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "bench", *args, "--url", url, "--code", DEV_CODE, "--seconds", "1"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_prekeys_and_relay_scenarios_run_and_report():
    raise_limits_for_a_load_test("prekeys", "messages")
    with running_server() as server:
        prekeys = run_bench(server.url, "prekeys", "--concurrency", "4")
        relay = run_bench(server.url, "relay", "--pairs", "2", "--window", "4")
        sealed = run_bench(server.url, "relay", "--pairs", "2", "--window", "4", "--sealed")

    assert prekeys["fetches"] > 0 and prekeys["errors"] == 0
    assert relay["delivered"] > 0 and relay["send_errors"] == 0
    assert sealed["sealed"] and sealed["delivered"] > 0 and sealed["send_errors"] == 0


def message_counts(metrics_port: int) -> dict[str, float]:
    """One server's own messages sent, delivered and acknowledged (all kinds), from its metrics port."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    counts = {"sent": 0.0, "delivered": 0.0, "acknowledged": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for what in counts:
                if sample.name == f"signalserver_messages_{what}_total":
                    counts[what] += sample.value
    return counts


def test_relay_across_processes_delivers_through_the_second_process():
    raise_limits_for_a_load_test("messages")
    senders_metrics, receivers_metrics = free_port(), free_port()
    with (
        running_server(METRICS_PORT=str(senders_metrics)) as senders_server,
        running_server(METRICS_PORT=str(receivers_metrics)) as receivers_server,
    ):
        pids = ["--server-pid", str(senders_server.pid), "--server-pid", str(receivers_server.pid)]
        relay = run_bench(senders_server.url, "relay", "--cross", "--url2", receivers_server.url, "--pairs", "2", "--window", "4", "--sealed", *pids)  # fmt: skip
        # What the event loops counted is written to the metrics within a second (signalserver.metrics).
        deadline = time.monotonic() + 10
        while (receiving := message_counts(receivers_metrics))["delivered"] < relay["delivered"] and time.monotonic() < deadline:
            time.sleep(0.2)
        sending = message_counts(senders_metrics)

    assert relay["cross"] and relay["delivered"] > 0 and relay["send_errors"] == 0 and relay["server_cpu_percent"] > 0
    # Every message was accepted by the first process and delivered and acknowledged on the second.
    assert sending["sent"] >= receiving["delivered"] >= relay["delivered"] and receiving["acknowledged"] > 0
    assert sending["delivered"] == sending["acknowledged"] == receiving["sent"] == 0


def test_relay_across_processes_needs_a_second_server():
    for extra in ([], ["--url2", "http://127.0.0.1:8000/"]):
        result = subprocess.run(
            [sys.executable, "-m", "bench", "relay", "--cross", "--url", "http://127.0.0.1:8000", *extra],
            cwd=PROJECT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0 and "--url2" in result.stderr


def test_the_latency_idle_and_fanout_scenarios_run_and_report():
    raise_limits_for_a_load_test("messages")
    with running_server() as server:
        pid = str(server.process.pid)
        latency = run_bench(server.url, "latency", "--pairs", "2", "--rate", "20", "--server-pid", pid)
        idle = run_bench(server.url, "idle", "--sockets", "10", "--server-pid", pid)
        fanout = run_bench(server.url, "fanout", "--recipients", "10", "--rounds", "2", "--server-pid", pid)

    assert latency["delivered"] > 0 and latency["send_errors"] == 0 and latency["p99_ms"] > 0
    assert idle["opened"] == idle["still_open_after_idle"] == 10 and idle["server_rss_after_mib"] > 0
    assert idle["registered_per_second"] > 0 and idle["server_cpu_ms_per_registration"] > 0
    assert fanout["all_received"] and [r["received"] for r in fanout["rounds"]] == [10, 10]


def test_the_group_scenario_sends_with_the_group_send_token_and_changes_the_group():
    raise_limits_for_a_load_test("groupChange")
    with running_server() as server:
        group = run_bench(server.url, "group", "--members", "12", "--rounds", "2", "--server-pid", str(server.process.pid))

    assert group["members"] == 12 and group["all_received"]
    assert [r["received"] for r in group["rounds"]] == [11, 11]
    assert group["changes"] > 0 and group["changes_per_second"] > 0


def test_the_benchmark_refuses_addresses_off_this_machine():
    result = subprocess.run(
        [sys.executable, "-m", "bench", "relay", "--url", "http://10.1.2.3:8000"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "only loopback" in result.stderr + result.stdout
