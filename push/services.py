"""Push notifications (spec §7): each device's APNs or FCM token, and the notifications.

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

from django.db.models import Case, F, Q, When
from django.utils import timezone

from accounts.models import Device

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
    rows.update(**{field: token, other: "", "fetches_messages": False, "push_token_set_at": timezone.now()})


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
    """Send a push challenge to an APNs/FCM token (spec §7.3): data key `challenge` for a
    verification session, `rateLimitChallenge` for a rate-limit challenge (spec §8.3)."""
    # Neither the token nor the challenge is logged: either one would let a reader answer it.
    logger.info("push challenge not sent: push delivery is disabled", extra={"push_platform": token_type})


def request_push(*, device_pk: int, urgent: bool) -> None:
    """Wake a device that has messages queued but no socket open (spec §4.5, §7).

    The one place the delivery path asks for a push; the push issue turns it into an APNs/FCM task
    (urgent now, non-urgent throttled). Nothing identifies the device in the log.
    """
    logger.debug("push not sent: push delivery is disabled", extra={"urgent": urgent})
