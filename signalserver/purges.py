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


def purges() -> list:
    from accounts.profiles import purge_replaced_profiles
    from accounts.retention import purge_account_records
    from accounts.usernames import purge_expired_claims
    from media.services import purge_attachments
    from messaging.reports import purge_reviewed_spam_reports
    from messaging.services import purge_expired_messages

    return [
        purge_expired_messages,
        purge_attachments,
        purge_replaced_profiles,
        purge_expired_claims,
        purge_account_records,
        purge_reviewed_spam_reports,
    ]


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
