"""Account odds and ends: device names, device capabilities, discoverability by number."""

import base64

import pytest

from accounts.models import Account, Device
from tests.factories import DeviceFactory

pytestmark = pytest.mark.django_db

NAME = base64.b64encode(b"\x01" * 60).decode()


@pytest.fixture
def primary():
    return DeviceFactory()


@pytest.fixture
def linked(primary):
    return DeviceFactory(account=primary.account, device_id=2)


def name_of(device) -> bytes | None:
    value = Device.objects.get(pk=device.pk).name
    return bytes(value) if value is not None else None


def test_a_device_names_itself(client_for, linked):
    assert client_for(linked).put("/v1/accounts/name", {"deviceName": NAME}, format="json").status_code == 204
    assert name_of(linked) == b"\x01" * 60


def test_the_primary_names_any_device_a_linked_one_only_itself(client_for, primary, linked):
    assert client_for(primary).put("/v1/accounts/name?deviceId=2", {"deviceName": NAME}, format="json").status_code == 204
    assert name_of(linked) == b"\x01" * 60
    assert client_for(linked).put("/v1/accounts/name?deviceId=1", {"deviceName": NAME}, format="json").status_code == 403
    assert name_of(primary) is None
    assert client_for(primary).put("/v1/accounts/name?deviceId=5", {"deviceName": NAME}, format="json").status_code == 404


@pytest.mark.parametrize("body", [{}, {"deviceName": ""}, {"deviceName": base64.b64encode(b"x" * 226).decode()}, {"deviceName": "%%%"}])
def test_a_missing_empty_or_oversized_name_is_422(client_for, primary, body):
    assert client_for(primary).put("/v1/accounts/name", body, format="json").status_code == 422


def test_a_device_replaces_its_capabilities(client_for, primary):
    primary.capabilities = ["storage", "spqr"]
    primary.save()
    response = client_for(primary).put("/v1/devices/capabilities", {"spqr": True, "transfer": True, "storage": False, "unknown": True}, format="json")
    assert response.status_code == 204
    assert Device.objects.get(pk=primary.pk).capabilities == ["spqr", "transfer"]
    assert client_for(primary).put("/v1/devices/capabilities", ["spqr"], format="json").status_code == 422


def test_discoverability_by_number_is_switched_and_needs_a_number(client_for, primary):
    path = "/v2/accounts/phone_number_discoverability"
    assert client_for(primary).put(path, {"discoverableByPhoneNumber": False}, format="json").status_code == 204
    assert Account.objects.get(pk=primary.account.pk).discoverable_by_phone_number is False
    assert client_for(primary).put(path, {"discoverableByPhoneNumber": True}, format="json").status_code == 204
    assert Account.objects.get(pk=primary.account.pk).discoverable_by_phone_number is True
    assert client_for(primary).put(path, {}, format="json").status_code == 422

    Account.objects.filter(pk=primary.account.pk).update(number=None)
    assert client_for(primary).put(path, {"discoverableByPhoneNumber": True}, format="json").status_code == 400


@pytest.mark.parametrize("path", ["/v1/accounts/name", "/v1/devices/capabilities", "/v2/accounts/phone_number_discoverability"])
def test_without_credentials_they_are_401(client, path):
    assert client.put(path, {}, content_type="application/json").status_code == 401
