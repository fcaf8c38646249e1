"""Celery tasks of the push app: load by id, call a service, own the retries."""

from celery import shared_task

from push import gateways, payloads, services

# Seconds before each retry of pushes the service could not take (429, 5xx, unreachable).
RETRY_DELAYS = (2, 4, 8, 16, 32)


@shared_task(bind=True, max_retries=len(RETRY_DELAYS), acks_late=True, ignore_result=True)
def send_new_message_pushes_task(self, devices: list[list]) -> None:
    """New-message notifications for (device pk, urgent) pairs."""
    retry = services.push_new_messages(devices)
    if retry and self.request.retries < len(RETRY_DELAYS):
        raise self.retry(args=[retry], countdown=RETRY_DELAYS[self.request.retries])


@shared_task(bind=True, max_retries=len(RETRY_DELAYS), acks_late=True, ignore_result=True)
def send_push_challenge_task(self, platform: str, token: str, kind: str, challenge: str) -> None:
    """A registration or rate-limit push challenge (kind: its data key)."""
    status = services.push_challenge(platform=platform, token=token, kind=kind, challenge=challenge)
    if status == gateways.RETRY and self.request.retries < len(RETRY_DELAYS):
        raise self.retry(countdown=RETRY_DELAYS[self.request.retries])


@shared_task(bind=True, max_retries=len(RETRY_DELAYS), acks_late=True, ignore_result=True)
def send_attempt_login_task(self, device_pk: int, context: str) -> None:
    """An "attempt login" alert to a device (e.g. its number failed a registration lock)."""
    notification = payloads.Notification(payloads.ATTEMPT_LOGIN, value=context)
    status = services.push_to_device(device_pk=device_pk, notification=notification)
    if status == gateways.RETRY and self.request.retries < len(RETRY_DELAYS):
        raise self.retry(countdown=RETRY_DELAYS[self.request.retries])
