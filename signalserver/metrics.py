"""What the server counts for operators: Prometheus metrics (docs/deployment.md, "Metrics").

Every metric is defined here, with the few helpers the code that counts calls. The exporter (the
metrics port, the queue collector, and `current_figures` for pages in the admin) is
`signalserver.metrics_export`.

Labels never carry an identifier: no account, device, number, address or guid, only names from
fixed sets (route patterns, envelope kinds, limiter names, task names, outcomes), so the number of
series is bounded.

The hot path pays little (docs/architecture.md §4): labelled children are bound once and kept
(`_children`, the module constants), batches are counted with one `inc(n)`, and what the event
loop counts per message is added up and written once a second (`_Deferred`).

Several processes (uvicorn workers, Celery's pool): with METRICS_DIR set, prometheus-client's
multiprocess mode keeps each process's values in files (`use_metrics_directory`), and the exporter
adds up every process of the host. Without it (`make run`, the tests) values stay in the process.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import time
from bisect import bisect_left
from pathlib import Path


def use_metrics_directory() -> None:
    """With METRICS_DIR set, give this process's start its own directory of metrics files and point
    prometheus-client at it (PROMETHEUS_MULTIPROC_DIR, read when prometheus_client is imported, so
    this runs first). A start is a server and the processes it started: uvicorn's workers, spawned
    by its supervisor, share the supervisor's directory; Celery's pool, forked once this ran, the
    main process's. The directory is named by the starting process and its start time, and the
    directories of starts no longer running are removed: each start counts from zero, and a worker
    that a supervisor replaces keeps its predecessor's counts."""
    base = os.environ.get("METRICS_DIR", "").strip()
    if not base or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    import multiprocessing

    parent = multiprocessing.parent_process()
    starter = parent.pid if parent is not None else os.getpid()
    name = f"{starter}-{_start_time(starter)}"
    directory = Path(base) / name
    directory.mkdir(parents=True, exist_ok=True)
    for other in Path(base).iterdir():
        if other.name != name and other.is_dir() and not _running(other.name):
            shutil.rmtree(other, ignore_errors=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


def _start_time(pid: int) -> str | None:
    """When the process started (clock ticks since boot, /proc): a pid and this name one process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _running(directory_name: str) -> bool:
    pid, _, started = directory_name.partition("-")
    return pid.isdigit() and _start_time(int(pid)) == started


use_metrics_directory()

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics  # noqa: E402

# `_created` series double what is exposed and are not kept in multiprocess mode anyway.
disable_created_metrics()

# --- Writes deferred on the event loop ------------------------------------------------------------

FLUSH_SECONDS = 1.0


class _Deferred:
    """Observations and increments made on the event loop (tunnelled requests, deliveries), added
    up in plain Python and written to the metrics at most FLUSH_SECONDS later: one write per bucket
    or counter touched, not two per observation. Each write is a locked store into a shared file
    under several processes (1.5 µs), a tenth of a message's cost in all; added up, they are
    noise. Elsewhere (database threads, the tests' sync code) writes are immediate. Scrapes see
    the loop's figures up to FLUSH_SECONDS late."""

    def __init__(self):
        self.histograms: dict = {}  # child → [sum, count per bucket...]
        self.counters: dict = {}  # child → amount
        self.scheduled_on = None  # the loop whose callback will flush

    def observe(self, child, bounds: tuple[float, ...], value: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            child.observe(value)
            return
        pending = self.histograms.get(child)
        if pending is None:
            pending = self.histograms[child] = [0.0] * (len(bounds) + 1)
        pending[0] += value
        pending[1 + bisect_left(bounds, value)] += 1
        self._schedule(loop)

    def inc(self, child, amount: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            child.inc(amount)
            return
        self.counters[child] = self.counters.get(child, 0) + amount
        self._schedule(loop)

    def _schedule(self, loop) -> None:
        if self.scheduled_on is not loop:  # (a loop that closed meanwhile never flushes: tests)
            self.scheduled_on = loop
            loop.call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        """Write what is pending now (the tests call it before they scrape)."""
        self.scheduled_on = None
        histograms, self.histograms = self.histograms, {}
        counters, self.counters = self.counters, {}
        for child, pending in histograms.items():
            # prometheus-client 0.26's Histogram child: a value per bucket (not cumulative) and
            # the sum, as its `observe` writes them (tests/signalserver/test_metrics.py compares).
            child._sum.inc(pending[0])
            for index, count in enumerate(pending[1:]):
                if count:
                    child._buckets[index].inc(count)
        for child, amount in counters.items():
            child.inc(amount)


deferred = _Deferred()


def flush() -> None:
    deferred.flush()

# --- Requests -----------------------------------------------------------------------------------

# Seconds; the count of a series is the request count.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, math.inf)
REQUEST_SECONDS = Histogram(
    "signalserver_request_duration_seconds",
    "Requests answered and their duration, by transport (http, or websocket for requests "
    "tunnelled over a socket), method, route pattern and status",
    ["transport", "method", "route", "status"],
    buckets=REQUEST_BUCKETS,
)
HTTP, WEBSOCKET = "http", "websocket"
UNMATCHED = "unmatched"  # a path no route serves
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_children: dict[tuple, object] = {}


def observe_request(transport: str, method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request. `route` is a pattern (never a path); any other method is "other"."""
    key = (transport, method, route, status)
    child = _children.get(key)
    if child is None:
        label = method if method in METHODS else "other"
        child = _children[key] = REQUEST_SECONDS.labels(transport, label, route, str(status))
    deferred.observe(child, REQUEST_BUCKETS, seconds)


# --- Messages -----------------------------------------------------------------------------------

IDENTIFIED, SEALED, MULTI_RECIPIENT, RECEIPT = "identified", "sealed", "multi_recipient", "receipt"

MESSAGES_SENT = Counter(
    "signalserver_messages_sent_total",
    "Envelopes accepted, one per destination device (ephemeral ones included), by how they were "
    "sent: identified, sealed (sealed sender and stories), multi_recipient, or receipt (the "
    "server's delivery receipts)",
    ["type"],
)
MESSAGES_DELIVERED = Counter(
    "signalserver_messages_delivered_total",
    "Envelopes handed to their device (over its socket, or listed by GET /v1/messages), by "
    "envelope type: identified, sealed (a multi-recipient envelope is one too), receipt",
    ["type"],
)
MESSAGES_ACKNOWLEDGED = Counter(
    "signalserver_messages_acknowledged_total",
    "Queued envelopes deleted because their device acknowledged them, by envelope type",
    ["type"],
)
SENT_IDENTIFIED, SENT_SEALED, SENT_MULTI_RECIPIENT, SENT_RECEIPT = (
    MESSAGES_SENT.labels(kind) for kind in (IDENTIFIED, SEALED, MULTI_RECIPIENT, RECEIPT)
)
_DELIVERED = {kind: MESSAGES_DELIVERED.labels(kind) for kind in (IDENTIFIED, SEALED, RECEIPT)}
_ACKNOWLEDGED = {kind: MESSAGES_ACKNOWLEDGED.labels(kind) for kind in (IDENTIFIED, SEALED, RECEIPT)}

# A serialized Envelope starts with its type (field 1, a varint: byte 0x08 then the value), since
# every envelope the server builds has one and protobuf writes fields in number order: the kind
# is read without parsing (messaging.envelopes: 5 is the server's receipt, 6 sealed sender).
_TYPE_TAG, _RECEIPT_TYPE, _SEALED_TYPE = 0x08, 5, 6
# envelope kind index: 0 identified, 1 sealed, 2 receipt
_KINDS = (IDENTIFIED, SEALED, RECEIPT)
IDENTIFIED_KIND = 0


def envelope_kind(envelope: bytes) -> int:
    """0 identified, 1 sealed, 2 receipt (an index into the tallies counted here)."""
    if len(envelope) > 1 and envelope[0] == _TYPE_TAG:
        if envelope[1] == _SEALED_TYPE:
            return 1
        if envelope[1] == _RECEIPT_TYPE:
            return 2
    return IDENTIFIED_KIND


def count_delivered(tally: list[int]) -> None:
    """Add a tally [identified, sealed, receipt] of delivered envelopes."""
    _add(_DELIVERED, tally)


def count_delivered_envelopes(envelopes) -> None:
    """Count delivered envelopes (serialized) by kind."""
    _add(_DELIVERED, _tally(envelopes))


def count_acknowledged(tally: list[int]) -> None:
    """Add a tally [identified, sealed, receipt] of acknowledged envelopes."""
    _add(_ACKNOWLEDGED, tally)


def _tally(envelopes) -> list[int]:
    tally = [0, 0, 0]
    for envelope in envelopes:
        tally[envelope_kind(envelope)] += 1
    return tally


def _add(children: dict, tally: list[int]) -> None:
    for kind, count in zip(_KINDS, tally, strict=True):
        if count:
            deferred.inc(children[kind], count)


DELIVERY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, math.inf)
DELIVERY_SECONDS = Histogram(
    "signalserver_message_delivery_seconds",
    "From a message's acceptance to its envelope written to the open socket of its device "
    "(live deliveries only: not a backlog read when the device connects)",
    buckets=DELIVERY_BUCKETS,
)


def observe_deliveries(accepted_ms: list[int]) -> None:
    """Observe the delivery latency of envelopes accepted at these times (ms since the epoch)."""
    now = time.time_ns() // 1_000_000
    for accepted in accepted_ms:
        deferred.observe(DELIVERY_SECONDS, DELIVERY_BUCKETS, max(0, now - accepted) / 1000)


# --- Sockets, limits, accounts, push ------------------------------------------------------------

OPEN_SOCKETS = Gauge(
    "signalserver_open_sockets",
    "WebSockets open now, by route (/v1/websocket/, /v1/websocket/provisioning/)",
    ["route"],
    multiprocess_mode="livesum",
)
# The routes of signalserver.routing, bound now: they show 0 rather than nothing.
for _route in ("/v1/websocket/", "/v1/websocket/provisioning/"):
    OPEN_SOCKETS.labels(_route)

RATE_LIMIT_REFUSALS = Counter(
    "signalserver_rate_limit_refusals_total",
    "Requests a rate limiter refused (429), by limiter name",
    ["limiter"],
)
_refusals: dict[str, object] = {}


def count_refusal(limiter: str) -> None:
    child = _refusals.get(limiter)
    if child is None:
        child = _refusals[limiter] = RATE_LIMIT_REFUSALS.labels(limiter)
    child.inc()


REGISTRATIONS = Counter(
    "signalserver_registrations_total",
    "Primary devices registered: new accounts (new), or a number's account registered again (reregistration)",
    ["kind"],
)
NEW_ACCOUNT, REREGISTRATION = REGISTRATIONS.labels("new"), REGISTRATIONS.labels("reregistration")

PUSH_NOTIFICATIONS = Counter(
    "signalserver_push_notifications_total",
    "Push notifications handed to APNs (apn) or FCM (fcm), by outcome: sent, invalid_token (the "
    "token was cleared), retry (the service was unavailable), failed (refused for good)",
    ["platform", "outcome"],
)
PUSH_OUTCOMES = ("sent", "invalid_token", "retry", "failed")


def count_pushes(counts: dict[tuple[str, str], int]) -> None:
    """Add (platform, outcome) → count; platforms are "apn" and "fcm"."""
    for (platform, outcome), count in counts.items():
        PUSH_NOTIFICATIONS.labels(platform, outcome).inc(count)


# --- Celery -------------------------------------------------------------------------------------

CELERY_TASKS = Counter(
    "signalserver_celery_tasks_total",
    "Celery tasks run, by task name and outcome (success, failure, retry, ...)",
    ["task", "outcome"],
)
CELERY_TASK_LAG = Histogram(
    "signalserver_celery_task_lag_seconds",
    "From a task's queueing (or its countdown's end) to a worker starting it, by task name",
    ["task"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
CELERY_HEARTBEAT = Gauge(
    "signalserver_celery_heartbeat_timestamp_seconds",
    "When a worker last ran the heartbeat task that beat schedules (seconds since the epoch)",
    multiprocess_mode="max",
)

# A header every task message carries from its publisher: when it was queued (seconds since the
# epoch), for the lag. Eager tasks (tests, the embedded run) are never published and have none.
QUEUED_AT_HEADER = "signalserver_queued_at"


def connect_celery_signals() -> None:
    """Count task outcomes and lag through Celery's signals (publisher and worker side)."""
    from celery import signals

    signals.before_task_publish.connect(_stamp_queued_at, weak=False, dispatch_uid="signalserver-metrics-publish")
    signals.task_prerun.connect(_observe_lag, weak=False, dispatch_uid="signalserver-metrics-prerun")
    signals.task_postrun.connect(_count_outcome, weak=False, dispatch_uid="signalserver-metrics-postrun")


def _stamp_queued_at(headers=None, **kwargs) -> None:
    if headers is not None:
        headers[QUEUED_AT_HEADER] = time.time()


def _observe_lag(task=None, **kwargs) -> None:
    queued_at = getattr(task.request, QUEUED_AT_HEADER, None)
    if not isinstance(queued_at, (int, float)):
        return
    due = queued_at
    eta = task.request.eta
    if eta:
        from datetime import datetime

        try:
            due = max(due, datetime.fromisoformat(eta).timestamp())
        except (TypeError, ValueError):
            pass
    CELERY_TASK_LAG.labels(task.name).observe(max(0.0, time.time() - due))


def _count_outcome(task=None, state=None, **kwargs) -> None:
    CELERY_TASKS.labels(task.name, (state or "unknown").lower()).inc()
