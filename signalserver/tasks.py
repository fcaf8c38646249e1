"""Celery tasks of the shared package."""

import time

from celery import shared_task

from signalserver.metrics import CELERY_HEARTBEAT


@shared_task(ignore_result=True)
def heartbeat_task() -> None:
    """Scheduled by beat every 30 s: its time in the metrics shows that beat, the broker and a
    worker work (docs/deployment.md, "Metrics": an alert fires when it grows old)."""
    CELERY_HEARTBEAT.set(time.time())
