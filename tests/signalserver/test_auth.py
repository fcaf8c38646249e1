import base64
from datetime import UTC, date, datetime

import pytest

from accounts.models import Device
from signalserver.auth import SaltedTokenHash, authenticate_device, parse_basic_header, refresh_last_seen
from tests.factories import DEFAULT_PASSWORD, DeviceFactory, basic_auth, device_auth


def test_salted_token_hash_matches_the_spec_construction():
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    hashed = SaltedTokenHash.generate("a-device-password")
    assert len(hashed.salt) == 32 and int(hashed.salt, 16) >= 0
    expected = HKDF(hashes.SHA256(), 32, hashed.salt.encode(), b"authtoken").derive(b"a-device-password")
    assert hashed.hash == "2." + expected.hex()
    assert hashed.verify("a-device-password")
    assert not hashed.verify("another-password")


def test_a_locked_hash_matches_no_password():
    hashed = SaltedTokenHash.generate("a-device-password")
    assert not SaltedTokenHash("!" + hashed.hash, hashed.salt).verify("a-device-password")


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer abc", "Basic", "Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode()],
)
def test_malformed_basic_headers_are_not_credentials(header):
    assert parse_basic_header(header) is None


@pytest.mark.django_db
def test_device_authenticates_with_aci_dot_device_id_and_with_bare_aci_as_primary():
    device = DeviceFactory()
    assert authenticate_device(f"{device.account_id}.1", DEFAULT_PASSWORD).device == device
    assert authenticate_device(str(device.account_id), DEFAULT_PASSWORD).device == device


@pytest.mark.django_db
@pytest.mark.parametrize("username_suffix", [".2", ".0", ".128", ".x", "x"])
def test_wrong_device_ids_do_not_authenticate(username_suffix):
    device = DeviceFactory()
    assert authenticate_device(f"{device.account_id}{username_suffix}", DEFAULT_PASSWORD) is None


@pytest.mark.django_db
def test_wrong_password_gets_401_and_right_one_200(client):
    device = DeviceFactory()
    client.credentials(HTTP_AUTHORIZATION=device_auth(device, "wrong-password-wrong-password"))
    response = client.get("/v1/accounts/whoami")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    client.credentials(HTTP_AUTHORIZATION=device_auth(device))
    assert client.get("/v1/accounts/whoami").status_code == 200


@pytest.mark.django_db
def test_unknown_account_and_missing_header_get_401(client):
    assert client.get("/v1/accounts/whoami").status_code == 401
    client.credentials(HTTP_AUTHORIZATION=basic_auth("6d2b1c3e-0000-4000-8000-000000000000.1", DEFAULT_PASSWORD))
    assert client.get("/v1/accounts/whoami").status_code == 401


@pytest.mark.django_db
def test_last_seen_is_kept_at_day_granularity_and_refreshed_once_a_day():
    device = DeviceFactory(last_seen=date(2026, 1, 1))
    late_in_the_day = datetime(2026, 3, 10, 23, 59, 59, tzinfo=UTC)
    refresh_last_seen(device, now=late_in_the_day)
    assert Device.objects.get(pk=device.pk).last_seen == date(2026, 3, 10)
    # The refresh moment is spread over the day by an ACI-derived offset, never more than a day late.
    device.last_seen = date(2026, 3, 9)
    Device.objects.filter(pk=device.pk).update(last_seen=date(2026, 3, 9))
    refresh_last_seen(device, now=datetime(2026, 3, 11, 23, 59, 59, tzinfo=UTC))
    assert Device.objects.get(pk=device.pk).last_seen == date(2026, 3, 11)


@pytest.mark.django_db
def test_authentication_sets_last_seen_to_today():
    device = DeviceFactory(last_seen=None)
    authenticate_device(str(device.account_id), DEFAULT_PASSWORD)
    assert Device.objects.get(pk=device.pk).last_seen == datetime.now(UTC).date()
