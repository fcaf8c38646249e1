"""Push challenges and alerts end to end: they reach the device through the local
APNs (tests/fakes/apns.py); a challenge is answered with what the device received."""

import pytest

from push import payloads
from tests.factories import DeviceFactory, override_limit
from tests.fakes.apns import apns_credentials, apns_server, apns_settings  # noqa: F401 (fixtures)
from tests.messaging.helpers import all_devices, message_list

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "e5" * 32


def test_a_verification_session_with_a_push_token_is_verified_by_the_pushed_challenge(client, apns_settings):  # noqa: F811
    created = client.post("/v1/verification/session", {"number": "+14155550142", "pushToken": TOKEN, "pushTokenType": "apn"}, format="json")
    assert created.status_code == 200
    session = created.json()

    (push,) = apns_settings.wait_for(1)
    assert (push.token, push.push_type, push.priority) == (TOKEN, "background", 5)
    challenge = push.payload[payloads.CHALLENGE]
    assert push.payload == {"aps": {"content-available": 1}, "challenge": challenge}

    answered = client.patch(f"/v1/verification/session/{session['id']}", {"pushChallenge": challenge}, format="json")
    assert answered.status_code == 200
    assert "pushChallenge" not in answered.json()["requestedInformation"]


def test_a_rate_limited_sender_lifts_its_limit_with_the_challenge_pushed_to_its_primary(client_for, apns_settings):  # noqa: F811
    sender_device = DeviceFactory(apn_id=TOKEN)
    recipient = DeviceFactory()
    api = client_for(sender_device)
    override_limit("messages", 1, 3600, account=sender_device.account)

    def send():
        return api.put(f"/v1/messages/{recipient.account.aci}", message_list(all_devices(recipient.account)), format="json")

    assert send().status_code == 200
    assert send().status_code == 428

    assert api.post("/v1/challenge/push").status_code == 200
    (push,) = apns_settings.wait_for(1)
    assert push.token == TOKEN
    challenge = push.payload["rateLimitChallenge"]
    answered = api.put("/v1/challenge", {"type": "rateLimitPushChallenge", "challenge": challenge}, format="json")
    assert answered.status_code == 200
    assert send().status_code == 200


def test_a_failed_registration_lock_alerts_the_existing_primary(apns_settings):  # noqa: F811
    from tests.accounts.test_registration_existing import LOCK, existing_primary, register_number

    primary = existing_primary(lock=LOCK)
    primary.apn_id = TOKEN
    primary.save(update_fields=["apn_id"])

    assert register_number().status_code == 423

    (push,) = apns_settings.wait_for(1)
    assert (push.token, push.push_type) == (TOKEN, "alert")
    assert push.payload == {
        "aps": {"mutable-content": 1, "alert": {"loc-key": "APN_Message"}},
        "attemptLoginContext": "failedRegistrationLock",
    }


def send_to_bob(client_for, alice, bob, *, urgent: bool):
    body = message_list(all_devices(bob.account), urgent=urgent)
    return client_for(alice).put(f"/v1/messages/{bob.account.aci}", body, format="json")


def test_non_urgent_messages_wake_a_device_once_and_urgent_ones_every_time(client_for, apns_settings):  # noqa: F811
    alice, bob = DeviceFactory(), DeviceFactory(apn_id=TOKEN)
    for _ in range(3):
        assert send_to_bob(client_for, alice, bob, urgent=False).status_code == 200
    (background,) = apns_settings.wait_for(1)
    assert (background.push_type, background.priority, background.payload) == ("background", 5, {"aps": {"content-available": 1}})

    assert send_to_bob(client_for, alice, bob, urgent=True).status_code == 200
    assert send_to_bob(client_for, alice, bob, urgent=True).status_code == 200
    pushes = apns_settings.wait_for(3)
    assert [push.push_type for push in pushes] == ["background", "alert", "alert"]
    assert len(apns_settings.pushes) == 3  # the two more non-urgent sends were coalesced


def test_operators_see_each_days_pushes_per_platform_and_no_token(client, client_for, apns_settings):  # noqa: F811
    from django.contrib.auth.models import User

    from push.models import PushDay

    alice, bob, carol = DeviceFactory(), DeviceFactory(apn_id=TOKEN), DeviceFactory(apn_id="f6" * 32)
    apns_settings.unregister("f6" * 32)
    assert send_to_bob(client_for, alice, bob, urgent=True).status_code == 200
    assert send_to_bob(client_for, alice, carol, urgent=True).status_code == 200
    apns_settings.wait_for(1)

    (day,) = PushDay.objects.all()
    assert (day.platform, day.sent, day.failed, day.invalidated) == ("apn", 1, 0, 1)
    User.objects.create_superuser("operator", "op@example.org", "operator-password")
    client.login(username="operator", password="operator-password")
    page = client.get("/admin/push/pushday/")
    assert page.status_code == 200
    assert page.context["cl"].result_count == 1
    assert TOKEN not in page.content.decode()
