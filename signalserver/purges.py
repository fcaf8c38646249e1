"""Scheduled deletions of what the server no longer needs. In production Celery beat runs each
purge's task (CELERY_BEAT_SCHEDULE); the embedded run has no beat, so there they run here, at most
hourly, when a device connects."""

from __future__ import annotations

import logging
import time

from django.conf import settings

from signalserver.errors import log_unavailable, unavailable_dependency

logger = logging.getLogger(__name__)

EMBEDDED_INTERVAL_SECONDS = 3600
_last_run = float("-inf")
# Each app registers its purges in its `ready()` (this package imports no app), each once.
_purges: list = []


def register_purge(purge) -> None:
    """Run `purge()` (no arguments) with the others when the embedded run's purges are due."""
    if purge not in _purges:
        _purges.append(purge)


def purges() -> list:
    return list(_purges)


def run_if_due() -> None:
    """Without beat (eager tasks), run every purge if the last run was an interval ago. A purge
    that fails is logged and the others still run; while the database is down none runs, and the
    next connection tries again (an outage is logged as one, not as a failure of each purge)."""
    global _last_run
    if not settings.CELERY_TASK_ALWAYS_EAGER or time.monotonic() - _last_run < EMBEDDED_INTERVAL_SECONDS:
        return
    _last_run = time.monotonic()
    for purge in purges():
        try:
            purge()
        except Exception as exc:
            dependency = unavailable_dependency(exc)
            if dependency is not None:
                log_unavailable(dependency)
                _last_run = float("-inf")
                return
            logger.exception("purge failed", extra={"purge": purge.__name__})
