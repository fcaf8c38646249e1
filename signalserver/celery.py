"""The Celery app: workers run push delivery and purges; beat schedules the purges."""

import logging.config
import os

from celery import Celery, signals

from signalserver import request_ids

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signalserver.settings")

app = Celery("signalserver")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

from signalserver.metrics import connect_celery_signals  # noqa: E402

connect_celery_signals()


@signals.worker_ready.connect(weak=False, dispatch_uid="signalserver-metrics-worker")
def serve_metrics_from_worker(**_) -> None:
    """A worker's main process serves the metrics port too (signalserver.metrics_export), once its
    pool has started (so the pool's processes do not inherit the listening socket)."""
    from signalserver.metrics_export import start_exporter

    start_exporter()


@signals.setup_logging.connect
def log_as_the_web_process_does(**_) -> None:
    """Workers and beat write the web process's scrubbed JSON lines, with request ids (Django's
    LOGGING, at LOG_LEVEL), not Celery's own format: Celery would otherwise replace our handlers."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


# A task queued during a request runs under its id (signalserver.request_ids).
signals.before_task_publish.connect(request_ids.add_to_task_headers)
signals.task_prerun.connect(request_ids.take_from_task)
signals.task_postrun.connect(request_ids.forget_after_task)
