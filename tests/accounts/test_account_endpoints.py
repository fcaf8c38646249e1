import os

import pytest

from accounts.models import Account, DeletedAccount, Device, RegistrationRecoveryPassword
from accounts.services import check_recovery_password
from keys.models import Identity, IdentityKey, OneTimePreKey
from signalserver.auth import SaltedTokenHash
from signalserver.wire import b64encode
from tests.factories import DeviceFactory


def attributes(**overrides):
    body = {
        "fetchesMessages": True,
        "registrationId": 1234,
        "pniRegistrationId": 4321,
        "name": b64encode(b"encrypted device name"),
        "capabilities": {"storage": True, "spqr": True, "transfer": False, "somethingNew": True},
        "unidentifiedAccessKey": b64encode(os.urandom(16)),
        "unrestrictedUnidentifiedAccess": False,
        "discoverableByPhoneNumber": True,
        "registrationLock": "ab" * 32,
        "recoveryPassword": b64encode(os.urandom(32)),
    }
    body.update(overrides)
    return body


@pytest.mark.django_db
def test_whoami_returns_the_account_identity(client_for):
    device = DeviceFactory(capabilities=["storage"])
    response = client_for(device).get("/v1/accounts/whoami")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "uuid": str(device.account.aci),
        "number": device.account.number,
        "pni": str(device.account.pni),
        "usernameHash": None,
        "usernameLinkHandle": None,
        "storageCapable": True,
        "entitlements": {"badges": [], "backup": None},
        "authCredentialSalt": None,
    }


@pytest.mark.django_db
def test_attributes_replace_device_and_account_fields_but_not_registration_ids(client_for):
    device = DeviceFactory(registration_id=77, pni_registration_id=88, user_agent="OWA")
    body = attributes()
    response = client_for(device).put("/v1/accounts/attributes", body, format="json", HTTP_X_SIGNAL_AGENT="OWD")
    assert response.status_code == 204
    device.refresh_from_db()
    account = device.account
    account.refresh_from_db()
    assert (device.registration_id, device.pni_registration_id) == (77, 88)
    assert device.fetches_messages is True
    assert bytes(device.name) == b"encrypted device name"
    assert device.capabilities == ["spqr", "storage"]
    assert device.user_agent == "OWD"
    assert bytes(account.unidentified_access_key) == __import__("base64").b64decode(body["unidentifiedAccessKey"])
    assert SaltedTokenHash(account.registration_lock_hash, account.registration_lock_salt).verify("ab" * 32)
    assert check_recovery_password(pni=account.pni, password=__import__("base64").b64decode(body["recoveryPassword"]))


@pytest.mark.django_db
def test_attributes_without_registration_lock_clear_it_and_null_name_clears_the_name(client_for):
    device = DeviceFactory(name=b"old")
    api = client_for(device)
    assert api.put("/v1/accounts/attributes", attributes(), format="json").status_code == 204
    body = attributes(name=None)
    del body["registrationLock"]
    assert api.put("/v1/accounts/attributes", body, format="json").status_code == 204
    device.refresh_from_db()
    device.account.refresh_from_db()
    assert device.name is None
    assert not device.account.has_registration_lock


@pytest.mark.django_db
@pytest.mark.parametrize(
    "overrides",
    [
        {"registrationId": 0},
        {"registrationId": 16384},
        {"registrationLock": "ab"},
        {"unidentifiedAccessKey": b64encode(os.urandom(15))},
        {"unidentifiedAccessKey": None},
        {"name": b64encode(os.urandom(226))},
        {"name": "%%%"},
        {"recoveryPassword": b64encode(os.urandom(31))},
        {"capabilities": ["storage"]},
        {"fetchesMessages": "sometimes"},
    ],
)
def test_invalid_attributes_get_422_and_change_nothing(client_for, overrides):
    device = DeviceFactory(fetches_messages=False)
    response = client_for(device).put("/v1/accounts/attributes", attributes(**overrides), format="json")
    assert response.status_code == 422
    assert response["Content-Type"] == "application/json"
    assert response.json()["errors"]
    device.refresh_from_db()
    assert device.fetches_messages is False


@pytest.mark.django_db
def test_unrestricted_access_makes_the_access_key_optional(client_for):
    device = DeviceFactory()
    body = attributes(unidentifiedAccessKey=None, unrestrictedUnidentifiedAccess=True)
    assert client_for(device).put("/v1/accounts/attributes", body, format="json").status_code == 204


@pytest.mark.django_db
def test_discoverable_without_a_number_is_400(client_for):
    device = DeviceFactory(account__number=None, account__pni=None)
    response = client_for(device).put("/v1/accounts/attributes", attributes(recoveryPassword=None), format="json")
    assert response.status_code == 400


@pytest.mark.django_db
def test_malformed_json_is_400_not_500(client_for):
    device = DeviceFactory()
    response = client_for(device).put("/v1/accounts/attributes", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == 400


@pytest.mark.django_db
def test_delete_me_removes_the_account_and_everything_it_owns(client_for):
    primary = DeviceFactory()
    linked = DeviceFactory(account=primary.account, device_id=2)
    account = primary.account
    IdentityKey.objects.create(account=account, identity=Identity.ACI, public_key=b"\x05" + os.urandom(32))
    OneTimePreKey.objects.create(device=linked, identity=Identity.ACI, key_id=1, public_key=b"\x05" + os.urandom(32))
    RegistrationRecoveryPassword.objects.create(pni=account.pni, password_hash="2.x", salt="00" * 16)
    response = client_for(linked).delete("/v1/accounts/me")
    assert response.status_code == 204
    assert not Account.objects.filter(pk=account.pk).exists()
    assert not Device.objects.filter(account_id=account.pk).exists()
    assert not IdentityKey.objects.exists() and not OneTimePreKey.objects.exists()
    assert not RegistrationRecoveryPassword.objects.filter(pni=account.pni).exists()
    assert DeletedAccount.objects.get(number=account.number).aci == account.aci
    assert client_for(primary).get("/v1/accounts/whoami").status_code == 401


@pytest.mark.django_db
def test_registration_lock_can_be_set_and_cleared(client_for):
    device = DeviceFactory()
    api = client_for(device)
    assert api.put("/v1/accounts/registration_lock", {"registrationLock": "cd" * 32}, format="json").status_code == 204
    device.account.refresh_from_db()
    assert device.account.has_registration_lock
    assert api.delete("/v1/accounts/registration_lock").status_code == 204
    device.account.refresh_from_db()
    assert not device.account.has_registration_lock


@pytest.mark.django_db
def test_registration_lock_needs_64_characters_and_a_number(client_for):
    device = DeviceFactory()
    assert client_for(device).put("/v1/accounts/registration_lock", {"registrationLock": "cd"}, format="json").status_code == 422
    numberless = DeviceFactory(account__number=None, account__pni=None)
    response = client_for(numberless).put("/v1/accounts/registration_lock", {"registrationLock": "cd" * 32}, format="json")
    assert response.status_code == 400


@pytest.mark.django_db
def test_account_existence_by_aci_and_pni(client):
    device = DeviceFactory()
    account = device.account
    assert client.head(f"/v1/accounts/account/{account.aci}").status_code == 200
    assert client.head(f"/v1/accounts/account/PNI:{account.pni}").status_code == 200
    assert client.head(f"/v1/accounts/account/{account.pni}").status_code == 404  # a bare UUID is an ACI
    assert client.head("/v1/accounts/account/6d2b1c3e-0000-4000-8000-000000000000").status_code == 404
    assert client.head(f"/v1/accounts/account/ACI:{account.aci}").status_code == 422
    assert client.head("/v1/accounts/account/not-a-uuid").status_code == 422


@pytest.mark.django_db
def test_account_existence_refuses_authenticated_callers(client_for):
    device = DeviceFactory()
    assert client_for(device).head(f"/v1/accounts/account/{device.account.aci}").status_code == 400


@pytest.mark.django_db
@pytest.mark.parametrize(
    "method,path",
    [
        ("get", "/v1/accounts/whoami"),
        ("put", "/v1/accounts/attributes"),
        ("delete", "/v1/accounts/me"),
        ("put", "/v1/accounts/registration_lock"),
        ("delete", "/v1/accounts/registration_lock"),
    ],
)
def test_account_endpoints_need_credentials(client, method, path):
    response = getattr(client, method)(path)
    assert response.status_code == 401
