"""Tasks of the messaging app: purges (scheduled by beat, see CELERY_BEAT_SCHEDULE) and the push
after a socket closed with messages left."""

from celery import shared_task

from accounts.models import Device
from messaging.presence import get_presence
from messaging.reports import purge_reviewed_spam_reports
from messaging.services import has_queued, purge_expired_messages
from push.services import push_new_messages


@shared_task
def purge_expired_messages_task() -> int:
    return purge_expired_messages()


@shared_task(ignore_result=True)
def purge_reviewed_spam_reports_task() -> int:
    return purge_reviewed_spam_reports()


@shared_task(ignore_result=True)
def push_if_still_away_task(device_pk: int) -> None:
    """A socket closed with messages left: if its device has not connected again and
    still has messages queued, push it. (A reconnection is what cancels the push.)"""
    device = Device.objects.filter(pk=device_pk).values_list("account_id", "device_id").first()
    if device is None or get_presence().lookup([device])[0] is not None or not has_queued(device_pk=device_pk):
        return
    push_new_messages([[device_pk, True]])
