"""`GET /v2/accounts/data_report`: what the server holds about the calling account, and nothing of
it once the account is deleted."""

import os

import pytest

from accounts.data_report import account_data
from accounts.models import Block, Device, Profile, UsernameClaim
from keys.models import Identity, IdentityKey
from tests.factories import DeviceFactory
from tests.messaging.helpers import all_devices, message_list

pytestmark = pytest.mark.django_db


def test_the_report_names_every_kind_of_record_and_deletion_leaves_none(client_for):
    alice = DeviceFactory(user_agent="OWA", apn_id="token")
    DeviceFactory(account=alice.account, device_id=2)
    IdentityKey.objects.create(account=alice.account, identity=Identity.ACI, public_key=b"\x05" + os.urandom(32))
    Profile.objects.create(account=alice.account, version="ab" * 32, commitment=os.urandom(97), name=os.urandom(81))
    UsernameClaim.objects.create(hash=os.urandom(32), account=alice.account, kind="confirmed")
    Block.objects.create(account=alice.account, blocked=DeviceFactory().account.aci)
    bob = DeviceFactory()
    client_for(bob).put(f"/v1/messages/{alice.account.aci}", message_list(all_devices(alice.account)), format="json")

    response = client_for(alice).get("/v2/accounts/data_report")
    assert response.status_code == 200
    report = response.json()
    assert set(report) == {"reportId", "reportTimestamp", "data", "text"}
    data = report["data"]
    assert data["account"]["aci"] == str(alice.account.aci) and data["account"]["phoneNumber"] == alice.account.number
    assert data["account"]["identityKeys"] == 1
    assert [device["id"] for device in data["devices"]] == [1, 2]
    assert (data["devices"][0]["userAgent"], data["devices"][0]["push"]) == ("OWA", "apn")
    assert "token" not in report["text"]  # never a push token
    assert (data["usernameHashes"], data["profileVersions"], data["blocks"], data["queuedMessages"]) == ({"confirmed": 1}, 1, 1, 2)

    assert client_for(alice).delete("/v1/accounts/me").status_code == 204
    assert account_data(alice.account.aci) == {}
    assert not Device.objects.filter(account_id=alice.account.aci).exists()


def test_the_report_needs_credentials(client):
    assert client.get("/v2/accounts/data_report").status_code == 401
