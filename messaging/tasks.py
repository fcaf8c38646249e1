"""Periodic work of the messaging app (scheduled by beat, see CELERY_BEAT_SCHEDULE)."""

from celery import shared_task

from messaging.services import purge_expired_messages


@shared_task
def purge_expired_messages_task() -> int:
    return purge_expired_messages()
