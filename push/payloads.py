"""What each push says: never message content, a sender or anything that identifies
an account, only that there is something to fetch, or a challenge the device answers.

`apns(notification)` and `fcm(notification)` give the platform's request for one notification;
the gateways (`push.gateways`) send them.
"""

from __future__ import annotations

from dataclasses import dataclass

NEW_MESSAGE, CHALLENGE, RATE_LIMIT_CHALLENGE, ATTEMPT_LOGIN = "newMessage", "challenge", "rateLimitChallenge", "attemptLogin"
APNS_MESSAGE_COLLAPSE_ID = "incoming-message"
APNS_ALERT = {"mutable-content": 1, "alert": {"loc-key": "APN_Message"}}
TTL_SECONDS = {"fcm": 28 * 86400, "apns": 30 * 86400}


@dataclass(frozen=True, slots=True)
class Notification:
    kind: str  # NEW_MESSAGE, CHALLENGE, RATE_LIMIT_CHALLENGE or ATTEMPT_LOGIN
    urgent: bool = True
    value: str = ""  # the challenge, or the login attempt's context


@dataclass(frozen=True, slots=True)
class ApnsRequest:
    payload: dict
    push_type: str  # "alert" or "background"
    priority: int  # 10 now, 5 when the device's power allows (background pushes must use 5)
    collapse_id: str | None
    ttl_seconds: int


def apns(notification: Notification) -> ApnsRequest:
    ttl = TTL_SECONDS["apns"]
    if notification.kind == NEW_MESSAGE:
        if notification.urgent:
            return ApnsRequest({"aps": APNS_ALERT}, "alert", 10, APNS_MESSAGE_COLLAPSE_ID, ttl)
        return ApnsRequest({"aps": {"content-available": 1}}, "background", 5, None, ttl)
    if notification.kind in (CHALLENGE, RATE_LIMIT_CHALLENGE):
        payload = {"aps": {"content-available": 1}, notification.kind: notification.value}
        return ApnsRequest(payload, "background", 5, None, ttl)
    if notification.kind == ATTEMPT_LOGIN:
        return ApnsRequest({"aps": APNS_ALERT, "attemptLoginContext": notification.value}, "alert", 10, None, ttl)
    raise ValueError(f"unknown notification kind {notification.kind!r}")


def fcm(notification: Notification) -> tuple[dict[str, str], str, int]:
    """(data, Android priority "high" or "normal", TTL in seconds) of an FCM data message."""
    data_key = {
        NEW_MESSAGE: "newMessageAlert",
        CHALLENGE: "challenge",
        RATE_LIMIT_CHALLENGE: "rateLimitChallenge",
        ATTEMPT_LOGIN: "attemptLoginContext",
    }.get(notification.kind)
    if data_key is None:
        raise ValueError(f"unknown notification kind {notification.kind!r}")
    return {data_key: notification.value}, "high" if notification.urgent else "normal", TTL_SECONDS["fcm"]
