import pytest
from django.contrib.auth.models import User

from accounts.models import Account
from tests.factories import DeviceFactory


@pytest.fixture
def operator_client(client):
    User.objects.create_superuser("operator", "op@example.org", "operator-password")
    client.login(username="operator", password="operator-password")
    return client


@pytest.mark.django_db
def test_admin_finds_an_account_by_aci_and_shows_no_secrets(operator_client):
    device = DeviceFactory(name=b"secret-device-name", apn_id="apns-token-value-123")
    DeviceFactory()  # another account, which the search must not list
    account = device.account
    listing = operator_client.get("/admin/accounts/account/", {"q": str(account.aci)})
    assert listing.status_code == 200
    assert str(account.aci) in listing.content.decode()
    assert "1 account" in listing.content.decode() or listing.context["cl"].result_count == 1

    page = operator_client.get(f"/admin/accounts/account/{account.aci}/change/").content.decode()
    assert str(account.aci) in page
    for secret in [device.auth_token_hash, device.auth_salt, account.number, "apns-token-value-123"]:
        assert secret not in page


@pytest.mark.django_db
def test_admin_device_list_is_searchable_by_aci(operator_client):
    device = DeviceFactory()
    page = operator_client.get("/admin/accounts/device/", {"q": str(device.account.aci)}).content.decode()
    assert f"{device.account.aci}.1" in page
    assert device.auth_token_hash not in page


@pytest.mark.django_db
def test_admin_delete_goes_through_the_account_service(operator_client):
    device = DeviceFactory()
    response = operator_client.post(
        "/admin/accounts/account/",
        {"action": "delete_accounts", "_selected_action": [str(device.account.aci)]},
    )
    assert response.status_code == 302
    assert not Account.objects.filter(aci=device.account.aci).exists()


@pytest.mark.django_db
def test_admin_shows_each_devices_created_and_last_seen_day_capabilities_and_platform(operator_client):
    primary = DeviceFactory(apn_id="apns-token", capabilities=["spqr", "storage"])
    DeviceFactory(account=primary.account, device_id=2, gcm_id="fcm-token")
    DeviceFactory(account=primary.account, device_id=3, fetches_messages=True)

    page = operator_client.get(f"/admin/accounts/account/{primary.account.aci}/change/").content.decode()

    for text in ("APNs", "FCM", "socket only", "spqr", "storage", "Created", "Last seen"):
        assert text in page
    assert "apns-token" not in page and "fcm-token" not in page


@pytest.mark.django_db
def test_a_devices_page_shows_its_push_platform_and_the_day_its_token_was_set_never_the_token(operator_client):
    from datetime import UTC, datetime

    apple = DeviceFactory(apn_id="apns-token-value", push_token_set_at=datetime(2026, 11, 2, 13, 14, tzinfo=UTC))
    socket_only = DeviceFactory(fetches_messages=True)

    page = operator_client.get(f"/admin/accounts/device/{apple.pk}/change/").content.decode()
    assert "APNs, token set on 2026-11-02" in page
    assert "apns-token-value" not in page and "13:14" not in page
    assert "socket only" in operator_client.get(f"/admin/accounts/device/{socket_only.pk}/change/").content.decode()
