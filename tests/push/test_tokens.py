"""The push token endpoints through the real routes, over HTTP and tunnelled."""

import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from accounts.models import Device
from tests.factories import DeviceFactory
from tests.messaging.helpers import parse_frame, request_frame, socket_for

pytestmark = pytest.mark.django_db

FCM_TOKEN = "fcm-token-" + "a" * 140
APN_TOKEN = "b" * 64


def fresh(device) -> Device:
    return Device.objects.get(pk=device.pk)


@pytest.fixture
def device():
    return DeviceFactory(fetches_messages=True)


@pytest.mark.parametrize("slash", ["/", ""], ids=["with slash", "without"])
def test_an_fcm_token_replaces_the_apns_token_and_the_device_stops_fetching(client_for, device, slash):
    device.apn_id = APN_TOKEN
    device.save(update_fields=["apn_id"])

    response = client_for(device).put(f"/v1/accounts/gcm{slash}", {"gcmRegistrationId": FCM_TOKEN}, format="json")

    assert (response.status_code, response.content) == (204, b"")
    row = fresh(device)
    assert (row.gcm_id, row.apn_id, row.fetches_messages) == (FCM_TOKEN, "", False)
    assert row.push_token_set_at is not None


@pytest.mark.parametrize("slash", ["/", ""], ids=["with slash", "without"])
def test_an_apns_token_replaces_the_fcm_token(client_for, device, slash):
    client_for(device).put("/v1/accounts/gcm/", {"gcmRegistrationId": FCM_TOKEN}, format="json")

    response = client_for(device).put(f"/v1/accounts/apn{slash}", {"apnRegistrationId": APN_TOKEN}, format="json")

    assert response.status_code == 204
    row = fresh(device)
    assert (row.apn_id, row.gcm_id, row.fetches_messages) == (APN_TOKEN, "", False)


def test_the_same_fcm_token_again_changes_nothing_but_an_apns_token_is_always_rewritten(client_for, device):
    api = client_for(device)
    api.put("/v1/accounts/gcm/", {"gcmRegistrationId": FCM_TOKEN}, format="json")
    first = fresh(device).push_token_set_at
    assert api.put("/v1/accounts/gcm/", {"gcmRegistrationId": FCM_TOKEN}, format="json").status_code == 204
    assert fresh(device).push_token_set_at == first

    api.put("/v1/accounts/apn/", {"apnRegistrationId": APN_TOKEN}, format="json")
    yesterday = fresh(device).push_token_set_at - timedelta(days=1)
    Device.objects.filter(pk=device.pk).update(push_token_set_at=yesterday)
    assert api.put("/v1/accounts/apn/", {"apnRegistrationId": APN_TOKEN}, format="json").status_code == 204
    assert fresh(device).push_token_set_at == yesterday + timedelta(days=1)


def test_a_push_token_keeps_only_the_hour_it_was_set(client_for, device):
    before = timezone.now()
    client_for(device).put("/v1/accounts/apn/", {"apnRegistrationId": APN_TOKEN}, format="json")

    set_at = fresh(device).push_token_set_at
    assert (set_at.minute, set_at.second, set_at.microsecond) == (0, 0, 0)
    assert before - timedelta(hours=1) < set_at <= before


@pytest.mark.parametrize("platform,field", [("gcm", "gcm_id"), ("apn", "apn_id")])
def test_deleting_a_token_clears_it_and_the_device_stops_fetching(client_for, device, platform, field):
    setattr(device, field, "some-token")
    device.save(update_fields=[field])

    assert client_for(device).delete(f"/v1/accounts/{platform}/").status_code == 204

    row = fresh(device)
    assert (getattr(row, field), row.fetches_messages, row.push_token_set_at) == ("", False, None)


def test_deleting_the_other_platforms_token_keeps_the_current_one_and_its_time(client_for, device):
    api = client_for(device)
    api.put("/v1/accounts/apn/", {"apnRegistrationId": APN_TOKEN}, format="json")
    set_at = fresh(device).push_token_set_at

    assert api.delete("/v1/accounts/gcm").status_code == 204

    row = fresh(device)
    assert (row.apn_id, row.push_token_set_at) == (APN_TOKEN, set_at)


@pytest.mark.parametrize(
    "platform,body",
    [
        ("gcm", {}),
        ("gcm", {"gcmRegistrationId": ""}),
        ("gcm", {"gcmRegistrationId": None}),
        ("gcm", {"gcmRegistrationId": "x" * 256}),
        ("apn", {"apnRegistrationId": ["a"]}),
        ("apn", {"gcmRegistrationId": APN_TOKEN}),
    ],
)
def test_a_missing_empty_or_oversized_token_is_422_and_changes_nothing(client_for, device, platform, body):
    response = client_for(device).put(f"/v1/accounts/{platform}/", body, format="json")

    assert response.status_code == 422
    row = fresh(device)
    assert (row.gcm_id, row.apn_id, row.fetches_messages) == ("", "", True)


@pytest.mark.parametrize("method", ["put", "delete"])
def test_the_token_endpoints_need_device_credentials(client, method):
    assert getattr(client, method)("/v1/accounts/gcm/", {"gcmRegistrationId": FCM_TOKEN}, format="json").status_code == 401


@pytest.mark.django_db(transaction=True)
async def test_a_token_set_over_the_socket_is_stored():
    device = await sync_to_async(DeviceFactory)(fetches_messages=True)
    ws = socket_for(device, headers=[(b"x-signal-disable-messages", b"true")])
    assert (await ws.connect())[0]
    body = json.dumps({"apnRegistrationId": APN_TOKEN}).encode()
    await ws.send_to(bytes_data=request_frame("PUT", "/v1/accounts/apn/", body=body, request_id=5, headers=["Content-Type:application/json"]))
    response = parse_frame(await ws.receive_from(timeout=3)).response
    await ws.disconnect()

    assert (response.id, response.status) == (5, 204)
    row = await sync_to_async(fresh)(device)
    assert (row.apn_id, row.fetches_messages) == (APN_TOKEN, False)
