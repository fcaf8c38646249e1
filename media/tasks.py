"""Celery tasks of the media app: the purge (scheduled by beat, see CELERY_BEAT_SCHEDULE)."""

from celery import shared_task

from media.services import purge_attachments


@shared_task(ignore_result=True)
def purge_attachments_task() -> int:
    return purge_attachments()
