"""Push notifications: each device's APNs or FCM token, and the notifications.

A device has at most one push token, of one platform; setting one clears the other and marks the
device as one that is woken by pushes instead of keeping a socket open (`fetchesMessages` false).
The time a token was set is kept, so that a push service's later "unregistered" report clears the
token only if it refers to that one.

`push.gateways` speaks APNs and FCM, but the tasks that send through them are not built yet (issue
16), so a notification is not delivered: the call is logged and returns normally, and callers carry
on as Signal's do when a push cannot be delivered (the client falls back to a captcha).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from celery.exceptions import Retry
from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, Q, When
from django.utils import timezone

from accounts.models import Device
from push import gateways, payloads, sender
from push.models import PushDay
from signalserver import metrics
from signalserver.errors import REDIS_UNAVAILABLE
from signalserver.redis_clients import sync_redis
from signalserver.timestamps import start_of_hour

logger = logging.getLogger(__name__)

FCM, APNS = "fcm", "apn"
_TOKEN_FIELD = {FCM: "gcm_id", APNS: "apn_id"}
MAX_TOKEN_LENGTH = 255  # Device.apn_id / gcm_id


def set_push_token(*, device: Device, platform: str, token: str) -> None:
    """Make `token` the device's push token (the other platform's is cleared, `fetchesMessages`
    turns false). An FCM token that is already the device's changes nothing; an APNs token is
    always written again, refreshing when it was set (as Signal does)."""
    field, other = _TOKEN_FIELD[platform], _TOKEN_FIELD[APNS if platform == FCM else FCM]
    rows = Device.objects.filter(pk=device.pk)
    if platform == FCM:
        rows = rows.filter(~Q(gcm_id=token) | ~Q(apn_id="") | Q(fetches_messages=True))
    set_at = start_of_hour(timezone.now())  # the hour only (docs/privacy.md), see Device.push_token_set_at
    rows.update(**{field: token, other: "", "fetches_messages": False, "push_token_set_at": set_at})


def clear_push_token(*, device: Device, platform: str) -> None:
    """Remove the device's token of `platform` (if it has one); `fetchesMessages` turns false."""
    field = _TOKEN_FIELD[platform]
    # One statement: the CASE sees the row as it was, so the time is kept when the device had no
    # token of this platform (it may have one of the other).
    Device.objects.filter(pk=device.pk).update(
        **{field: ""},
        fetches_messages=False,
        push_token_set_at=Case(When(**{field: ""}, then=F("push_token_set_at")), default=None),
    )


def send_push_challenge(token_type: str, token: str, challenge: str, *, data_key: str = "challenge") -> None:
    """Send a push challenge to an APNs/FCM token, from a task: data key `challenge`
    for a verification session, `rateLimitChallenge` for a rate-limit challenge. Call
    it after commit. Without that platform configured nothing is sent (the client falls back to a
    captcha)."""
    platform = token_type.lower()
    if platform not in sender.configured_platforms():
        # Neither the token nor the challenge is logged: either one would let a reader answer it.
        logger.info("push challenge not sent: push delivery is disabled", extra={"push_platform": platform})
        return
    from push.tasks import send_push_challenge_task

    _queue(send_push_challenge_task, platform, token, data_key, challenge)


def push_challenge(*, platform: str, token: str, kind: str, challenge: str) -> str:
    """Send one challenge now; the outcome's status (push.gateways)."""
    (outcome,) = _send([(platform, token, payloads.Notification(kind, value=challenge))])
    if outcome.status == gateways.FAILED:
        logger.warning("push challenge refused", extra={"platform": platform, "reason": outcome.reason})
    return outcome.status


FAILED_REGISTRATION_LOCK = "failedRegistrationLock"  # an attempted login's context


def alert_attempted_login(*, device_pk: int, context: str) -> None:
    """Tell a device that someone tried to register its number (context: why it failed), from a
    task after commit."""
    if sender.configured_platforms():
        from push.tasks import send_attempt_login_task

        transaction.on_commit(lambda: _queue(send_attempt_login_task, device_pk, context))


def push_to_device(*, device_pk: int, notification: payloads.Notification) -> str | None:
    """Send one notification to a device's token now; the outcome's status (push.gateways), None
    when the device has no token (or is gone). An invalid token is cleared."""
    row = Device.objects.filter(pk=device_pk).exclude(apn_id="", gcm_id="").values_list("apn_id", "gcm_id").first()
    if row is None:
        return None
    platform, token = (APNS, row[0]) if row[0] else (FCM, row[1])
    (outcome,) = _send([(platform, token, notification)])
    if outcome.status == gateways.INVALID_TOKEN:
        clear_invalid_token(device_pk=device_pk, platform=platform, token=token, invalidated_at_ms=outcome.invalidated_at_ms)
    return outcome.status


# A non-urgent message wakes a device at most once in this many seconds.
NON_URGENT_WINDOW_SECONDS = 20 * 60
NON_URGENT_KEY_PREFIX = "push:non-urgent:"
_local_windows: dict[int, float] = {}  # without Redis (the embedded run)


def request_pushes(*, devices: list[tuple[int, bool]]) -> None:
    """Wake devices that have messages queued but no socket open: (device pk, urgent) pairs, from
    the delivery path after commit. Urgent ones are pushed now; non-urgent ones
    at most once per device per 20 minutes. One task for the whole batch; nothing identifying in
    the log. Without push configured, nothing is sent (said once at start-up)."""
    if not sender.configured_platforms():
        return
    wanted = [[device_pk, urgent] for device_pk, urgent in devices if urgent or _opens_window(device_pk)]
    if wanted:
        from push.tasks import send_new_message_pushes_task

        _queue(send_new_message_pushes_task, wanted)


def request_push_later(*, device_pk: int, task) -> None:
    """Run `task(device_pk)` PUSH_AFTER_CLOSE_SECONDS from now, when push is configured: the push
    of a device whose socket closed with messages left, which `task` sends unless it came back."""
    if sender.configured_platforms():
        _queue(task, device_pk, countdown=settings.PUSH_AFTER_CLOSE_SECONDS)


def _queue(task, *args, countdown: float | None = None) -> None:
    """Queue a push task; never raises: a push that cannot be queued (the broker is down) is lost,
    the message or the request that asked for it is not (the device still finds its queue when it
    connects; a challenge can be asked for again)."""
    try:
        task.apply_async(args=args, countdown=countdown)
    except Retry:
        pass  # eager tasks (tests, the embedded run): the retry has run already
    except Exception:
        logger.warning("push not queued", extra={"task": task.name}, exc_info=True)


def forget_push_windows() -> None:
    """Every device may be woken by a non-urgent message again (tests start from none)."""
    _local_windows.clear()
    if settings.REDIS_URL:
        client = sync_redis()
        keys = list(client.scan_iter(match=f"{NON_URGENT_KEY_PREFIX}*", count=1000))
        if keys:
            client.delete(*keys)


def _opens_window(device_pk: int) -> bool:
    if settings.REDIS_URL:
        key = f"{NON_URGENT_KEY_PREFIX}{device_pk}"
        try:
            return bool(sync_redis().set(key, 1, nx=True, ex=NON_URGENT_WINDOW_SECONDS))
        except REDIS_UNAVAILABLE:
            return True  # better one push too many than a device that never learns
    now = time.monotonic()
    if _local_windows.get(device_pk, 0) > now:
        return False
    _local_windows[device_pk] = now + NON_URGENT_WINDOW_SECONDS
    return True


def push_new_messages(devices: list[list]) -> list[list]:
    """Send the new-message notifications of (device pk, urgent) pairs; the pairs worth trying
    again (the push service was unavailable). Devices without a token (or gone) are skipped;
    invalid tokens are cleared (`clear_invalid_token`)."""
    urgent_by_pk = {device_pk: urgent for device_pk, urgent in devices}
    targets = list(
        Device.objects.filter(pk__in=urgent_by_pk)
        .exclude(apn_id="", gcm_id="")
        .values_list("pk", "apn_id", "gcm_id", "push_token_set_at")
    )
    items = [
        (APNS if apn_id else FCM, apn_id or gcm_id, payloads.Notification(payloads.NEW_MESSAGE, urgent=urgent_by_pk[pk]))
        for pk, apn_id, gcm_id, _ in targets
    ]
    retry = []
    for (pk, *_), (platform, token, _notification), outcome in zip(targets, items, _send(items), strict=True):
        if outcome.status == gateways.INVALID_TOKEN:
            clear_invalid_token(device_pk=pk, platform=platform, token=token, invalidated_at_ms=outcome.invalidated_at_ms)
        elif outcome.status == gateways.RETRY:
            retry.append([pk, urgent_by_pk[pk]])
        elif outcome.status == gateways.FAILED:
            logger.warning("push refused", extra={"platform": platform, "reason": outcome.reason})
    return retry


def _send(items: list[tuple[str, str, payloads.Notification]]) -> list[gateways.PushOutcome]:
    """Send through `push.sender` and count the outcomes for operators (PushDay, signalserver.metrics)."""
    outcomes = sender.send_all(items)
    counts: dict[str, dict[str, int]] = {}
    by_outcome: dict[tuple[str, str], int] = {}  # (platform, outcome) for signalserver.metrics
    for (platform, _token, _notification), outcome in zip(items, outcomes, strict=True):
        column = {gateways.SENT: "sent", gateways.INVALID_TOKEN: "invalidated"}.get(outcome.status, "failed")
        platform_counts = counts.setdefault(platform, {})
        platform_counts[column] = platform_counts.get(column, 0) + 1
        key = (platform, _PUSH_OUTCOMES.get(outcome.status, "failed"))
        by_outcome[key] = by_outcome.get(key, 0) + 1
    metrics.count_pushes(by_outcome)
    today = timezone.now().date()
    for platform, columns in counts.items():
        PushDay.objects.get_or_create(day=today, platform=platform)
        PushDay.objects.filter(day=today, platform=platform).update(**{name: F(name) + n for name, n in columns.items()})
    return outcomes


_PUSH_OUTCOMES = {gateways.SENT: "sent", gateways.INVALID_TOKEN: "invalid_token", gateways.RETRY: "retry"}


def clear_invalid_token(*, device_pk: int, platform: str, token: str, invalidated_at_ms: int | None) -> bool:
    """The push service says `token` is no longer valid: clear it, unless the device has another
    token since, or set this one again after the service's time of invalidation."""
    rows = Device.objects.filter(pk=device_pk, **{_TOKEN_FIELD[platform]: token})
    if invalidated_at_ms is not None:
        invalidated_at = datetime.fromtimestamp(invalidated_at_ms / 1000, tz=UTC)
        rows = rows.filter(Q(push_token_set_at__isnull=True) | Q(push_token_set_at__lt=invalidated_at))
    return bool(rows.update(**{_TOKEN_FIELD[platform]: "", "push_token_set_at": None}))
