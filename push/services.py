"""Push notifications (spec §7).

This build has no APNs/FCM gateway configured (DESIGN.md §1: push is disabled on the embedded
defaults), so a notification is not delivered: the call is logged and returns normally, and callers
carry on as Signal's do when a push cannot be delivered (the client falls back to a captcha).
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


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
