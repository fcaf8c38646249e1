"""What each push says: exactly Signal's payloads, nothing that identifies anyone."""

import pytest

from push import payloads
from push.payloads import Notification

CHALLENGE = "0123456789abcdef0123456789abcdef"


def test_an_urgent_new_message_is_an_apns_alert_collapsed_under_incoming_message():
    request = payloads.apns(Notification(payloads.NEW_MESSAGE, urgent=True))
    assert request.payload == {"aps": {"mutable-content": 1, "alert": {"loc-key": "APN_Message"}}}
    assert (request.push_type, request.priority, request.collapse_id) == ("alert", 10, "incoming-message")
    assert request.ttl_seconds == 30 * 86400


def test_a_non_urgent_new_message_is_an_apns_background_push_at_priority_5():
    request = payloads.apns(Notification(payloads.NEW_MESSAGE, urgent=False))
    assert request.payload == {"aps": {"content-available": 1}}
    assert (request.push_type, request.priority, request.collapse_id) == ("background", 5, None)


@pytest.mark.parametrize("kind", [payloads.CHALLENGE, payloads.RATE_LIMIT_CHALLENGE])
def test_challenges_are_apns_background_pushes_carrying_the_challenge(kind):
    request = payloads.apns(Notification(kind, value=CHALLENGE))
    assert request.payload == {"aps": {"content-available": 1}, kind: CHALLENGE}
    assert (request.push_type, request.priority) == ("background", 5)


def test_an_attempted_login_is_an_apns_alert_with_its_context():
    request = payloads.apns(Notification(payloads.ATTEMPT_LOGIN, value="failedRegistrationLock"))
    assert request.payload == {
        "aps": {"mutable-content": 1, "alert": {"loc-key": "APN_Message"}},
        "attemptLoginContext": "failedRegistrationLock",
    }
    assert request.push_type == "alert"


@pytest.mark.parametrize(
    "notification,data,priority",
    [
        (Notification(payloads.NEW_MESSAGE, urgent=True), {"newMessageAlert": ""}, "high"),
        (Notification(payloads.NEW_MESSAGE, urgent=False), {"newMessageAlert": ""}, "normal"),
        (Notification(payloads.CHALLENGE, value=CHALLENGE), {"challenge": CHALLENGE}, "high"),
        (Notification(payloads.RATE_LIMIT_CHALLENGE, value=CHALLENGE), {"rateLimitChallenge": CHALLENGE}, "high"),
        (Notification(payloads.ATTEMPT_LOGIN, value="failedRegistrationLock"), {"attemptLoginContext": "failedRegistrationLock"}, "high"),
    ],
)
def test_fcm_data_messages(notification, data, priority):
    assert payloads.fcm(notification) == (data, priority, 28 * 86400)


def test_an_unknown_kind_is_refused_on_both_platforms():
    with pytest.raises(ValueError):
        payloads.apns(Notification("sender"))
    with pytest.raises(ValueError):
        payloads.fcm(Notification("sender"))
