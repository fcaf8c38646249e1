"""The example alerting rules (deploy/prometheus): valid for Prometheus (`promtool check rules`, from
Debian's prometheus package, which `make test` installs), their unit tests pass (`promtool test
rules`), they cover what operators must hear about, and every metric they name is one the server
exposes."""

import re
import subprocess

import pytest
import yaml
from prometheus_client import generate_latest

from signalserver.metrics_export import exposition_registry
from tests.servers import PROJECT

RULES = PROJECT / "deploy" / "prometheus" / "signalserver.rules.yml"
RULE_TESTS = PROJECT / "deploy" / "prometheus" / "signalserver.rules.test.yml"
PROMTOOL = "/usr/bin/promtool"


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=RULES.parent, capture_output=True, text=True, timeout=60)


def test_promtool_finds_the_rules_valid():
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_the_rules_fire_as_their_unit_tests_expect():
    tested = promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_rules_alert_on_errors_delivery_latency_queue_age_push_failures_and_the_heartbeat():
    alerts = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}
    assert alerts >= {
        "SignalserverHighErrorRate",
        "SignalserverSlowDelivery",
        "SignalserverQueueTooOld",
        "SignalserverPushFailures",
        "SignalserverNoCeleryHeartbeat",
    }


@pytest.mark.django_db
def test_every_metric_the_rules_name_is_exposed():
    exposed = set(re.findall(r"^# TYPE (\w+) (\w+)", generate_latest(exposition_registry()).decode(), re.M))
    names = {name for name, _ in exposed}
    histograms = {name for name, kind in exposed if kind == "histogram"}
    counters = {name for name, kind in exposed if kind == "counter"}
    for name in set(re.findall(r"\bsignalserver_\w+", RULES.read_text())):
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        assert (
            name in names
            or (base in histograms and name != base)
            or (name.endswith("_total") and name[: -len("_total")] in counters)
        ), name
