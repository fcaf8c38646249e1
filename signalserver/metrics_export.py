"""Serving the metrics (docs/deployment.md, "Metrics"): never on the public port.

`METRICS_PORT` (bound to `METRICS_HOST`, loopback by default) serves Prometheus' text format from
a thread of the process. Every process of a host that sets it tries to bind the port; one holds it
and the others try again every BIND_RETRY_SECONDS, so a restarted or dead holder is replaced.
Whichever holds it serves the same figures: the sum over every process of the host.

With METRICS_DIR set, every process writes its values to files under it (one directory per start
of a server: `signalserver.metrics.use_metrics_directory`), and the exporter adds up the files of
every directory there: the web's port also shows the Celery worker's task and push figures. A
gauge of open sockets counts only processes that are alive. Without METRICS_DIR (`make run`, the
tests) the process's own values are served.

The queue's depth and the age of its oldest row are read from PostgreSQL at each scrape, with
queries that touch an index, never the whole table: the messaging app registers that reader
(`register_queue_figures`, `messaging.selectors.queue_figures`), as this package imports no app.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import threading
import time
from pathlib import Path

from django.conf import settings
from django.db import connection
from signalserver import metrics  # noqa: F401  (first: it decides where values are kept)
from prometheus_client import REGISTRY, CollectorRegistry, start_http_server  # noqa: I001
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

logger = logging.getLogger(__name__)

BIND_RETRY_SECONDS = 10.0
# The queue's depth is counted exactly up to this many rows, and estimated from PostgreSQL's
# statistics beyond: a count of millions of rows at every scrape is not cheap.
QUEUE_EXACT_COUNT = 10_000
HOUR_SECONDS = 3600

# prometheus-client's file names: `counter_<pid>.db`, `gauge_livesum_<pid>.db`, ...
_FILE_NAME = re.compile(r"(?P<kind>counter|histogram|summary|gauge_(?P<mode>[a-z]+))_(?P<pid>\d+)\.db")


def multiprocess_dir() -> Path | None:
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(value) if value else None


class HostFilesCollector:
    """The values of every process of this host: the files of PROMETHEUS_MULTIPROC_DIR and of the
    directories beside it, minus the live gauges of processes that have exited."""

    def __init__(self, directory: Path):
        self.directory = directory

    def files(self) -> list[str]:
        found = []
        for path in sorted(self.directory.parent.glob("*/*.db")):
            match = _FILE_NAME.fullmatch(path.name)
            if match is None:
                continue
            mode = match["mode"] or ""
            if mode.startswith("live") and not _alive(int(match["pid"])):
                continue
            found.append(str(path))
        return found

    def collect(self):
        return MultiProcessCollector.merge(self.files(), accumulate=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    return True


class ProcessCollector:
    """This process's values (no multiprocess mode)."""

    def collect(self):
        return REGISTRY.collect()


# The reader of the queue's figures, registered by the messaging app in its `ready()`.
_queue_reader = None


def register_queue_figures(reader) -> None:
    """`reader()` → (depth, hour since the epoch of the oldest row or None), read at each scrape."""
    global _queue_reader
    _queue_reader = reader


class QueueCollector:
    """The queue's depth and the age of its oldest row, read at each scrape. `own_thread`: the
    scrape runs in a thread of its own, whose database connection goes back to the pool after."""

    def __init__(self, *, own_thread: bool):
        self.own_thread = own_thread

    def collect(self):
        if _queue_reader is None:
            return
        try:
            depth, oldest_hour = queue_figures(close=self.own_thread)
        except Exception:
            logger.warning("metrics: the queue could not be read", exc_info=True)
            return
        depth_family = GaugeMetricFamily(
            "signalserver_queue_depth",
            f"Envelopes queued for devices (exact up to {QUEUE_EXACT_COUNT}, PostgreSQL's estimate beyond)",
        )
        depth_family.add_metric([], depth)
        yield depth_family
        age = GaugeMetricFamily(
            "signalserver_queue_oldest_age_seconds",
            "Age of the oldest queued envelope, to the hour (a row keeps only its hour); 0 when the queue is empty",
        )
        age.add_metric([], 0 if oldest_hour is None else max(0.0, time.time() - oldest_hour * HOUR_SECONDS))
        yield age


def queue_figures(*, close: bool = False) -> tuple[int, int | None]:
    """(depth, hour since the epoch of the oldest row or None), from the registered reader."""
    try:
        return _queue_reader()
    finally:
        if close:
            connection.close()


def exposition_registry(*, own_thread: bool = False) -> CollectorRegistry:
    """What the metrics port serves: every process's values and the queue's figures."""
    registry = CollectorRegistry(auto_describe=False)
    directory = multiprocess_dir()
    registry.register(HostFilesCollector(directory) if directory else ProcessCollector())
    registry.register(QueueCollector(own_thread=own_thread))
    return registry


def current_figures() -> dict:
    """The current totals and gauges, for pages in the admin (as the metrics port would serve
    them: summed over the host's processes). Counters are totals since their process type
    started; a page that polls takes differences for rates.

    {"requests": {"http": n, "websocket": n}, "request_errors": {...: 5xx answers},
     "messages_sent" / "messages_delivered" / "messages_acknowledged": {type: n},
     "open_sockets": n, "queue_depth": n, "queue_oldest_age_seconds": s,
     "registrations": {"new": n, "reregistration": n}, "rate_limit_refusals": {limiter: n},
     "push_notifications": {outcome: n}, "celery_tasks": {outcome: n},
     "celery_heartbeat": seconds since the epoch or None}
    """
    figures: dict = {
        "requests": {},
        "request_errors": {},
        "messages_sent": {},
        "messages_delivered": {},
        "messages_acknowledged": {},
        "open_sockets": 0,
        "queue_depth": 0,
        "queue_oldest_age_seconds": 0.0,
        "registrations": {},
        "rate_limit_refusals": {},
        "push_notifications": {},
        "celery_tasks": {},
        "celery_heartbeat": None,
    }

    def add(section: str, key: str, value: float) -> None:
        figures[section][key] = figures[section].get(key, 0) + value

    by_counter = {
        "signalserver_messages_sent_total": ("messages_sent", "type"),
        "signalserver_messages_delivered_total": ("messages_delivered", "type"),
        "signalserver_messages_acknowledged_total": ("messages_acknowledged", "type"),
        "signalserver_registrations_total": ("registrations", "kind"),
        "signalserver_rate_limit_refusals_total": ("rate_limit_refusals", "limiter"),
        "signalserver_push_notifications_total": ("push_notifications", "outcome"),
        "signalserver_celery_tasks_total": ("celery_tasks", "outcome"),
    }
    for family in exposition_registry().collect():
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name in by_counter:
                section, label = by_counter[name]
                add(section, labels[label], value)
            elif name == "signalserver_request_duration_seconds_count":
                add("requests", labels["transport"], value)
                if labels["status"].startswith("5"):
                    add("request_errors", labels["transport"], value)
            elif name == "signalserver_open_sockets":
                figures["open_sockets"] += value
            elif name == "signalserver_queue_depth":
                figures["queue_depth"] = value
            elif name == "signalserver_queue_oldest_age_seconds":
                figures["queue_oldest_age_seconds"] = value
            elif name == "signalserver_celery_heartbeat_timestamp_seconds" and value > 0:
                figures["celery_heartbeat"] = value
    return figures


# --- The metrics port ----------------------------------------------------------------------------

_exporter_lock = threading.Lock()
_exporter_started = False


def start_exporter() -> None:
    """Serve the metrics on METRICS_HOST:METRICS_PORT from a thread of this process, when set:
    now if the port is free, else as soon as the process holding it lets go."""
    global _exporter_started
    if not settings.METRICS_PORT:
        return
    with _exporter_lock:
        if _exporter_started:
            return
        _exporter_started = True
    threading.Thread(target=_serve, name="metrics", daemon=True).start()


def _serve() -> None:
    registry = exposition_registry(own_thread=True)
    warned = False
    while True:
        try:
            start_http_server(settings.METRICS_PORT, addr=settings.METRICS_HOST, registry=registry)
            return
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                logger.error("metrics: cannot serve on the metrics port", extra={"error": error.strerror})
                return
            if not warned and multiprocess_dir() is None:
                # A single process has nobody to share the port with: someone else holds it.
                logger.warning("metrics: the metrics port is taken; trying again", extra={"port": settings.METRICS_PORT})
                warned = True
        time.sleep(BIND_RETRY_SECONDS)
