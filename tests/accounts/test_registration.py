"""POST /v1/registration: proofs, validation and signatures, and what a new account stores."""

import os
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Account, DeletedAccount, Device, PhoneNumberIdentifier, VerificationSession
from accounts.services import check_recovery_password, store_recovery_password
from keys.models import Identity, IdentityKey, LastResortKey, SignedPreKey
from signalserver.auth import SaltedTokenHash, authenticate_device
from signalserver.wire import b64decode, b64encode, b64encode_unpadded, b64encode_url
from tests.crypto import IdentityKeyPair, signed_ec_prekey, signed_kem_prekey
from tests.factories import DeviceFactory, basic_auth

NUMBER = "+442079460958"  # never produced by the factories
PASSWORD = "new-primary-password-0123456789"
SIGNED_KEYS = ["aciSignedPreKey", "pniSignedPreKey", "aciPqLastResortPreKey", "pniPqLastResortPreKey"]
PNI_MATERIAL = ["pniIdentityKey", "pniRegistrationId", "pniSignedPreKey", "pniPqLastResortPreKey"]


def registration_body(*, attributes=None, **fields) -> dict:
    """A complete, validly signed registration body (proof not included)."""
    aci, pni = IdentityKeyPair(), IdentityKeyPair()
    body = {
        "accountAttributes": {
            "fetchesMessages": False,
            "registrationId": 1234,
            "pniRegistrationId": 4321,
            "name": b64encode(b"encrypted device name"),
            "capabilities": {"spqr": True, "storage": True, "somethingNew": True},
            "unidentifiedAccessKey": b64encode(os.urandom(16)),
            "unrestrictedUnidentifiedAccess": False,
            "discoverableByPhoneNumber": True,
            **(attributes or {}),
        },
        "skipDeviceTransfer": False,
        "aciIdentityKey": b64encode(aci.public_key),
        "pniIdentityKey": b64encode(pni.public_key),
        "aciSignedPreKey": signed_ec_prekey(aci, key_id=11),
        "pniSignedPreKey": signed_ec_prekey(pni, key_id=12),
        "aciPqLastResortPreKey": signed_kem_prekey(aci, key_id=13),
        "pniPqLastResortPreKey": signed_kem_prekey(pni, key_id=14),
        "gcmToken": {"gcmRegistrationId": "fcm-token-of-the-primary"},
    }
    body.update(fields)
    return body


def verification_session(number, *, verified=True, expires_in=timedelta(minutes=10)) -> str:
    """A verification session row, as the verification endpoints leave it; returns its wire id."""
    raw = os.urandom(16)
    VerificationSession.objects.create(
        id=raw, number=number, verified=verified, expires_at=timezone.now() + expires_in
    )
    return b64encode_url(raw, padded=True)


def register(number, body, *, password=PASSWORD, authorization=None):
    headers = {"HTTP_AUTHORIZATION": authorization or basic_auth(number, password), "HTTP_X_SIGNAL_AGENT": "OWA"}
    return APIClient().post("/v1/registration", body, format="json", **headers)


def register_with_session(number=NUMBER, **fields):
    return register(number, registration_body(sessionId=verification_session(number), **fields))


def assert_nothing_stored():
    for model in (Account, Device, IdentityKey, SignedPreKey, LastResortKey):
        assert not model.objects.exists(), model.__name__


def corrupted(signature: str) -> str:
    raw = bytearray(b64decode(signature))
    raw[0] ^= 0x01
    return b64encode_unpadded(bytes(raw))


# --- a new number ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_new_number_gets_an_account_with_a_primary_device_and_keys():
    body = registration_body(sessionId=verification_session(NUMBER))
    response = register(NUMBER, body)

    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    account = Account.objects.get()
    pni = PhoneNumberIdentifier.objects.get(number=NUMBER).pni
    assert response.json() == {
        "uuid": str(account.aci),
        "number": NUMBER,
        "pni": str(pni),
        "usernameHash": None,
        "usernameLinkHandle": None,
        "storageCapable": False,
        "entitlements": {"badges": [], "backup": None},
        "authCredentialSalt": None,
        "reregistration": False,
    }
    assert account.number == NUMBER and account.pni == pni
    assert bytes(account.unidentified_access_key) == b64decode(body["accountAttributes"]["unidentifiedAccessKey"])
    assert account.discoverable_by_phone_number is True and not account.has_registration_lock

    device = Device.objects.get()
    assert device.account_id == account.aci and device.device_id == 1
    assert (device.registration_id, device.pni_registration_id) == (1234, 4321)
    assert bytes(device.name) == b"encrypted device name"
    assert device.capabilities == ["spqr", "storage"]
    assert (device.gcm_id, device.apn_id, device.fetches_messages) == ("fcm-token-of-the-primary", "", False)
    assert device.user_agent == "OWA"
    assert device.last_seen == timezone.now().date()
    assert PASSWORD not in device.auth_token_hash
    assert authenticate_device(f"{account.aci}.1", PASSWORD).device == device
    assert authenticate_device(str(account.aci), PASSWORD).device == device
    assert authenticate_device(str(account.aci), PASSWORD + "x") is None

    identity_keys = {key.identity: bytes(key.public_key) for key in IdentityKey.objects.filter(account=account)}
    assert identity_keys == {
        Identity.ACI: b64decode(body["aciIdentityKey"]),
        Identity.PNI: b64decode(body["pniIdentityKey"]),
    }
    for model, aci_field, pni_field in [
        (SignedPreKey, "aciSignedPreKey", "pniSignedPreKey"),
        (LastResortKey, "aciPqLastResortPreKey", "pniPqLastResortPreKey"),
    ]:
        stored = {key.identity: key for key in model.objects.filter(device=device)}
        assert set(stored) == {Identity.ACI, Identity.PNI}
        for identity, field in [(Identity.ACI, aci_field), (Identity.PNI, pni_field)]:
            key = stored[identity]
            assert key.key_id == body[field]["keyId"]
            assert bytes(key.public_key) == b64decode(body[field]["publicKey"])
            assert bytes(key.signature) == b64decode(body[field]["signature"])


@pytest.mark.django_db
def test_new_number_registration_is_a_dozen_statements(django_assert_max_num_queries):
    # The session read, then one transaction: the PNI row inserted and locked, the existing-account
    # and deleted-account reads, the account (registration lock included), the device, the identity
    # keys, the signed prekeys and the last-resort keys (both identities in one statement each).
    # The first request of a process also reads the operator settings and address bans: not counted.
    assert register_with_session("+14155550123").status_code == 200
    body = registration_body(sessionId=verification_session(NUMBER))
    with django_assert_max_num_queries(12):
        response = register(NUMBER, body)
    assert response.status_code == 200, response.content


@pytest.mark.django_db
def test_number_without_an_account_keeps_the_pni_it_had():
    pni = PhoneNumberIdentifier.objects.create(number=NUMBER).pni
    response = register_with_session()
    assert response.status_code == 200, response.content
    assert response.json()["pni"] == str(pni) and Account.objects.get().pni == pni
    assert PhoneNumberIdentifier.objects.filter(number=NUMBER).count() == 1


@pytest.mark.django_db
def test_registration_lock_and_recovery_password_from_the_attributes_are_stored():
    lock, recovery = os.urandom(32).hex(), os.urandom(32)
    response = register_with_session(
        attributes={"registrationLock": lock, "recoveryPassword": b64encode(recovery)}
    )
    assert response.status_code == 200, response.content
    account = Account.objects.get()
    assert SaltedTokenHash(account.registration_lock_hash, account.registration_lock_salt).verify(lock)
    assert check_recovery_password(pni=account.pni, password=recovery)


@pytest.mark.django_db
def test_deleted_account_aci_is_reused_within_30_days():
    old_aci = uuid.uuid4()
    DeletedAccount.objects.create(number=NUMBER, aci=old_aci, deleted_at=timezone.now() - timedelta(days=29))
    response = register_with_session()
    assert response.status_code == 200, response.content
    assert response.json()["uuid"] == str(old_aci)
    assert response.json()["reregistration"] is False
    assert not DeletedAccount.objects.exists()


@pytest.mark.django_db
def test_deleted_account_older_than_30_days_gives_a_fresh_aci():
    old_aci = uuid.uuid4()
    DeletedAccount.objects.create(number=NUMBER, aci=old_aci, deleted_at=timezone.now() - timedelta(days=31))
    response = register_with_session()
    assert response.status_code == 200, response.content
    assert response.json()["uuid"] != str(old_aci)
    assert not DeletedAccount.objects.exists()


# --- signatures and capabilities ---------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("field", SIGNED_KEYS)
def test_corrupted_signature_is_rejected_and_nothing_stored(field):
    body = registration_body(sessionId=verification_session(NUMBER))
    body[field]["signature"] = corrupted(body[field]["signature"])
    response = register(NUMBER, body)
    assert response.status_code == 422
    assert response.json()["message"] == "Invalid signature"
    assert_nothing_stored()
    assert not PhoneNumberIdentifier.objects.filter(number=NUMBER).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("field", SIGNED_KEYS)
def test_prekey_signed_by_the_other_identity_is_rejected(field):
    body = registration_body(sessionId=verification_session(NUMBER))
    other = IdentityKeyPair()
    body[field] = (signed_kem_prekey if "Pq" in field else signed_ec_prekey)(other, key_id=99)
    response = register(NUMBER, body)
    assert response.status_code == 422
    assert_nothing_stored()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "field,value",
    [
        ("aciIdentityKey", b64encode(b"\x06" + os.urandom(32))),  # wrong type byte
        ("pniIdentityKey", b64encode(b"\x05" + os.urandom(33))),  # trailing byte
        ("aciSignedPreKey", {"keyId": 1, "publicKey": b64encode(b"\x08" + os.urandom(1568)), "signature": "AA"}),
        ("aciPqLastResortPreKey", {"keyId": 1, "publicKey": b64encode(b"\x05" + os.urandom(32)), "signature": "AA"}),
    ],
)
def test_malformed_keys_are_rejected(field, value):
    response = register_with_session(**{field: value})
    assert response.status_code == 422
    assert_nothing_stored()


@pytest.mark.django_db
def test_missing_spqr_capability_is_refused_with_499():
    response = register_with_session(attributes={"capabilities": {"storage": True}})
    assert response.status_code == 499
    assert_nothing_stored()


# --- proof of the number -----------------------------------------------------------------------


@pytest.mark.django_db
def test_unverified_session_is_unauthorized():
    body = registration_body(sessionId=verification_session(NUMBER, verified=False))
    assert register(NUMBER, body).status_code == 401
    assert_nothing_stored()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "session_id",
    [
        pytest.param(lambda: b64encode_url(os.urandom(16), padded=True), id="unknown"),
        pytest.param(lambda: verification_session(NUMBER, expires_in=timedelta(seconds=-1)), id="expired"),
        pytest.param(lambda: verification_session("+14155550123"), id="other-number"),
        pytest.param(lambda: "not*base64!", id="undecodable"),
    ],
)
def test_session_that_does_not_prove_this_number_is_a_bad_request(session_id):
    response = register(NUMBER, registration_body(sessionId=session_id()))
    assert response.status_code == 400
    assert_nothing_stored()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "proofs",
    [
        pytest.param({}, id="none"),
        pytest.param({"sessionId": ""}, id="empty-session"),
        pytest.param({"sessionId": "c2Vzc2lvbg==", "recoveryPassword": b64encode(os.urandom(32))}, id="two"),
    ],
)
def test_exactly_one_proof_is_required(proofs):
    response = register(NUMBER, registration_body(**proofs))
    assert response.status_code == 422
    assert response.json()["errors"]


@pytest.mark.django_db
def test_recovery_password_registers_the_number_again():
    primary = DeviceFactory(account__number="+14155550123")
    recovery = os.urandom(32)
    store_recovery_password(pni=primary.account.pni, password=recovery)
    response = register("+14155550123", registration_body(recoveryPassword=b64encode(recovery)))
    assert response.status_code == 200, response.content
    assert response.json()["uuid"] == str(primary.account.aci)
    assert response.json()["reregistration"] is True


@pytest.mark.django_db
def test_wrong_recovery_password_is_forbidden_and_changes_nothing():
    primary = DeviceFactory(account__number="+14155550123")
    store_recovery_password(pni=primary.account.pni, password=os.urandom(32))
    response = register("+14155550123", registration_body(recoveryPassword=b64encode(os.urandom(32))))
    assert response.status_code == 403
    assert list(Device.objects.all()) == [primary]
    assert not IdentityKey.objects.exists()


@pytest.mark.django_db
def test_recovery_password_for_a_number_never_seen_is_forbidden():
    response = register(NUMBER, registration_body(recoveryPassword=b64encode(os.urandom(32))))
    assert response.status_code == 403
    assert_nothing_stored()


@pytest.mark.django_db
def test_receipt_credential_presentation_is_not_accepted_as_proof():
    response = register(NUMBER, registration_body(receiptCredentialPresentation=b64encode(b"presentation")))
    assert response.status_code == 403
    assert_nothing_stored()


# --- the registration Basic header and the number ------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("authorization", [None, "Basic !!!", "Bearer abc", "Basic " + b64encode(b"no-colon")])
def test_missing_or_malformed_basic_header_is_unauthorized(authorization):
    body = registration_body(sessionId=verification_session(NUMBER))
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = APIClient().post("/v1/registration", body, format="json", **headers)
    assert response.status_code == 401
    assert_nothing_stored()


@pytest.mark.django_db
@pytest.mark.parametrize("password", ["short-password1", "x" * 513])
def test_password_outside_16_to_512_characters_is_rejected(password):
    body = registration_body(sessionId=verification_session(NUMBER))
    assert register(NUMBER, body, password=password).status_code == 422
    assert_nothing_stored()


@pytest.mark.django_db
def test_non_normalised_number_is_a_bad_request_naming_the_normalised_form():
    body = registration_body(sessionId=verification_session(NUMBER))
    response = register("+44 20 7946 0958", body)
    assert response.status_code == 400
    assert response.json() == {"originalNumber": "+44 20 7946 0958", "normalizedNumber": NUMBER}
    assert_nothing_stored()


@pytest.mark.django_db
@pytest.mark.parametrize("username", ["+1234", "__no_number__"])
def test_invalid_number_is_rejected(username):
    body = registration_body(sessionId=verification_session(username))
    assert register(username, body).status_code == 422
    assert_nothing_stored()


@pytest.mark.django_db
def test_malformed_json_is_a_bad_request():
    response = APIClient().post(
        "/v1/registration",
        '{"accountAttributes": ',
        content_type="application/json",
        HTTP_AUTHORIZATION=basic_auth(NUMBER, PASSWORD),
    )
    assert response.status_code == 400


# --- delivery channel and PNI material -----------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "fetches,tokens",
    [
        pytest.param(True, {"gcmToken": {"gcmRegistrationId": "t"}}, id="fetches-with-token"),
        pytest.param(False, {"gcmToken": None}, id="no-token"),
        pytest.param(False, {"apnToken": {"apnRegistrationId": "a"}}, id="both-tokens"),
        pytest.param(False, {"gcmToken": {"gcmRegistrationId": ""}}, id="blank-token"),
    ],
)
def test_delivery_channel_rule_is_enforced(fetches, tokens):
    response = register_with_session(attributes={"fetchesMessages": fetches}, **tokens)
    assert response.status_code == 422
    assert_nothing_stored()


@pytest.mark.django_db
def test_device_that_fetches_messages_registers_without_a_push_token():
    response = register_with_session(attributes={"fetchesMessages": True}, gcmToken=None)
    assert response.status_code == 200, response.content
    device = Device.objects.get()
    assert device.fetches_messages is True and (device.apn_id, device.gcm_id) == ("", "")


@pytest.mark.django_db
def test_apn_token_is_stored_for_the_primary():
    response = register_with_session(gcmToken=None, apnToken={"apnRegistrationId": "apns-token"})
    assert response.status_code == 200, response.content
    assert (Device.objects.get().apn_id, Device.objects.get().gcm_id) == ("apns-token", "")


@pytest.mark.django_db
@pytest.mark.parametrize("missing", PNI_MATERIAL)
def test_pni_material_must_be_all_or_nothing(missing):
    body = registration_body(sessionId=verification_session(NUMBER))
    if missing == "pniRegistrationId":
        del body["accountAttributes"][missing]
    else:
        del body[missing]
    response = register(NUMBER, body)
    assert response.status_code == 422
    assert_nothing_stored()


@pytest.mark.django_db
def test_number_registration_without_any_pni_material_is_rejected():
    body = registration_body(sessionId=verification_session(NUMBER))
    del body["accountAttributes"]["pniRegistrationId"]
    for field in ("pniIdentityKey", "pniSignedPreKey", "pniPqLastResortPreKey"):
        del body[field]
    response = register(NUMBER, body)
    assert response.status_code == 422
    assert_nothing_stored()


@pytest.mark.django_db
def test_openapi_schema_documents_registration_and_its_errors(client):
    operation = client.get("/v1/openapi.json").json()["paths"]["/v1/registration"]["post"]
    assert {"200", "400", "401", "403", "409", "422", "423", "499"} <= set(operation["responses"])
    request_schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert request_schema["$ref"].endswith("/RegistrationRequest")
