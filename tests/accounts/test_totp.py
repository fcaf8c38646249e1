"""Two-factor authentication (our extension): TOTP enrolment, confirmation and removal through the
real routes, and the 441 it puts in front of re-registering the account's number."""

import logging
import time

import pyotp
import pytest
from rest_framework.test import APIClient

from accounts.models import Account, Device, TotpEnrolment
from accounts.totp.serializers import OneTimeCodeField
from tests.accounts.test_registration import register, registration_body, verification_session
from tests.accounts.test_registration_existing import LOCK, NUMBER, existing_primary, register_number
from tests.factories import DeviceFactory, device_auth


def api(device):
    return APIClient(HTTP_AUTHORIZATION=device_auth(device))


def start(device) -> str:
    response = api(device).post("/v1/accounts/totp")
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    return response.json()["secret"]


def enrol(device):
    """(secret, the code that confirmed it, backup codes) of a confirmed enrolment."""
    secret = start(device)
    code = pyotp.TOTP(secret).now()
    response = api(device).put("/v1/accounts/totp", {"code": code}, format="json")
    assert response.status_code == 200, response.content
    return secret, code, response.json()["backupCodes"]


def fresh_code(secret) -> str:
    """A code not spent yet: the next step's (the current one confirmed the enrolment); the server
    accepts one step either side of its own."""
    return pyotp.TOTP(secret).at(time.time() + 30)


def wrong_code(secret) -> str:
    totp, now = pyotp.TOTP(secret), time.time()
    valid = {totp.at(now + offset) for offset in (-60, -30, 0, 30, 60)}
    return next(code for code in (f"{n:06d}" for n in range(1000)) if code not in valid)


# --- Enrolment ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_enrolment_gives_a_secret_and_an_otpauth_uri_without_the_number():
    primary = DeviceFactory(account__number=NUMBER)

    body = api(primary).post("/v1/accounts/totp").json()

    assert set(body) == {"secret", "uri"}
    parsed = pyotp.parse_uri(body["uri"])
    assert parsed.secret == body["secret"] and parsed.issuer == "signalserver"
    assert (parsed.digits, parsed.interval) == (6, 30)
    assert NUMBER not in body["uri"] and NUMBER[1:] not in body["uri"]
    # Stored encrypted: the secret is nowhere in the row.
    enrolment = TotpEnrolment.objects.get()
    assert not enrolment.confirmed
    assert body["secret"].encode() not in bytes(enrolment.encrypted_secret)


@pytest.mark.django_db
def test_a_current_code_confirms_the_enrolment_and_returns_ten_backup_codes():
    primary = DeviceFactory()
    secret, _, backup_codes = enrol(primary)

    assert len(set(backup_codes)) == 10
    assert all(len(code) == 10 and code.isdigit() and code[0] != "0" for code in backup_codes)
    enrolment = TotpEnrolment.objects.get()
    assert enrolment.confirmed
    stored = str(enrolment.backup_codes)
    assert not any(code in stored for code in backup_codes)  # only salted hashes are kept
    assert api(primary).post("/v1/accounts/totp").status_code == 409  # remove it first


@pytest.mark.django_db
def test_a_wrong_code_does_not_confirm():
    primary = DeviceFactory()
    secret = start(primary)

    response = api(primary).put("/v1/accounts/totp", {"code": wrong_code(secret)}, format="json")

    assert response.status_code == 403
    assert response.json() == {"code": 403, "message": "wrong code"}
    assert not TotpEnrolment.objects.get().confirmed


@pytest.mark.django_db
def test_starting_again_before_confirming_replaces_the_secret():
    primary = DeviceFactory()
    first = start(primary)
    second = start(primary)

    assert first != second
    stale = api(primary).put("/v1/accounts/totp", {"code": pyotp.TOTP(first).now()}, format="json")
    assert stale.status_code == 403
    assert api(primary).put("/v1/accounts/totp", {"code": pyotp.TOTP(second).now()}, format="json").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("code", [None, "", "12345", "1234567", "abcdef", 10**6, -1, True, "１２３４５６", ["123456"]])
def test_codes_of_the_wrong_shape_are_a_validation_error(code):
    primary = DeviceFactory()
    start(primary)
    response = api(primary).put("/v1/accounts/totp", {"code": code}, format="json")
    assert response.status_code == 422
    assert "errors" in response.json()


@pytest.mark.django_db
def test_confirming_without_a_pending_enrolment_is_a_conflict():
    primary = DeviceFactory()
    assert api(primary).put("/v1/accounts/totp", {"code": "123456"}, format="json").status_code == 409
    secret, _, _ = enrol(primary)
    assert api(primary).put("/v1/accounts/totp", {"code": fresh_code(secret)}, format="json").status_code == 409


@pytest.mark.django_db
def test_only_the_primary_manages_two_factor():
    primary = DeviceFactory()
    linked = DeviceFactory(account=primary.account, device_id=2)
    secret, _, _ = enrol(primary)

    assert api(linked).post("/v1/accounts/totp").status_code == 403
    assert api(linked).put("/v1/accounts/totp", {"code": fresh_code(secret)}, format="json").status_code == 403
    assert api(linked).delete("/v1/accounts/totp", {"code": fresh_code(secret)}, format="json").status_code == 403
    assert APIClient().post("/v1/accounts/totp").status_code == 401
    assert TotpEnrolment.objects.get().confirmed


@pytest.mark.django_db
def test_a_secret_moved_to_another_account_cannot_be_read():
    # The ciphertext is bound to its account (AES-GCM associated data).
    first, second = DeviceFactory(), DeviceFactory()
    secret = start(first)
    start(second)
    TotpEnrolment.objects.filter(account=second.account).update(
        encrypted_secret=TotpEnrolment.objects.get(account=first.account).encrypted_secret
    )

    response = api(second).put("/v1/accounts/totp", {"code": pyotp.TOTP(secret).now()}, format="json")

    assert response.status_code == 403


# --- Removal --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_removing_a_confirmed_second_factor_needs_one_of_its_codes():
    primary = DeviceFactory()
    secret, _, _ = enrol(primary)

    assert api(primary).delete("/v1/accounts/totp").status_code == 403
    assert api(primary).delete("/v1/accounts/totp", {"code": wrong_code(secret)}, format="json").status_code == 403
    assert TotpEnrolment.objects.exists()

    assert api(primary).delete("/v1/accounts/totp", {"code": fresh_code(secret)}, format="json").status_code == 204
    assert not TotpEnrolment.objects.exists()
    assert api(primary).delete("/v1/accounts/totp").status_code == 204  # nothing left: nothing to do


@pytest.mark.django_db
def test_a_backup_code_removes_it_and_a_pending_enrolment_goes_without_a_code():
    primary = DeviceFactory()
    _, _, backup_codes = enrol(primary)
    assert api(primary).delete("/v1/accounts/totp", {"code": backup_codes[3]}, format="json").status_code == 204

    start(primary)
    assert api(primary).delete("/v1/accounts/totp").status_code == 204
    assert not TotpEnrolment.objects.exists()


# --- Registration ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_totp_blocks_reregistration_without_a_code():
    primary = existing_primary()
    secret, _, _ = enrol(primary)

    for body in ({}, {"totp": None}, {"totp": int(wrong_code(secret))}, {"totp": wrong_code(secret)}):
        response = register_number(**body)
        assert response.status_code == 441, body
        assert response["Content-Type"] == "application/json"
        assert response.json()["code"] == 441

    # Nothing changed: the old primary is still the account's device.
    assert list(Device.objects.values_list("pk", flat=True)) == [primary.pk]


@pytest.mark.django_db
def test_a_valid_code_lets_reregistration_through_and_the_second_factor_stays():
    primary = existing_primary()
    secret, _, _ = enrol(primary)

    response = register_number(totp=int(fresh_code(secret)))  # Signal's clients send an integer

    assert response.status_code == 200, response.content
    assert response.json()["uuid"] == str(primary.account_id) and response.json()["reregistration"]
    assert Device.objects.get().pk != primary.pk
    assert TotpEnrolment.objects.get(account=primary.account).confirmed
    assert register_number().status_code == 441  # the next re-registration needs a code again


@pytest.mark.django_db
def test_a_code_works_once():
    primary = existing_primary()
    secret, confirmation_code, _ = enrol(primary)

    assert register_number(totp=confirmation_code).status_code == 441  # spent on the confirmation
    code = fresh_code(secret)
    assert register_number(totp=code).status_code == 200
    assert register_number(totp=code).status_code == 441


@pytest.mark.django_db
def test_a_backup_code_works_once():
    primary = existing_primary()
    _, _, backup_codes = enrol(primary)

    assert register_number(totp=backup_codes[0]).status_code == 200
    assert register_number(totp=backup_codes[0]).status_code == 441
    assert register_number(totp=int(backup_codes[1])).status_code == 200
    spaced = f"{backup_codes[2][:5]}-{backup_codes[2][5:]}"
    assert register_number(totp=spaced).status_code == 200
    assert len(TotpEnrolment.objects.get().backup_codes) == 7


@pytest.mark.django_db
def test_a_pending_enrolment_does_not_block_reregistration():
    start(existing_primary())
    assert register_number().status_code == 200


@pytest.mark.django_db
def test_the_number_proof_transfer_and_lock_checks_come_before_the_totp_check():
    primary = existing_primary(capabilities=["transfer"], lock=LOCK)
    secret, _, _ = enrol(primary)

    unverified = registration_body(sessionId=verification_session(NUMBER, verified=False))
    assert register(NUMBER, unverified).status_code == 401  # the number is not proven
    assert register_number().status_code == 409  # device transfer offered
    assert register_number(skipDeviceTransfer=True).status_code == 423  # registration lock
    response = register_number(
        skipDeviceTransfer=True, attributes={"registrationLock": LOCK}, totp=fresh_code(secret)
    )
    assert response.status_code == 200, response.content


@pytest.mark.django_db
def test_registration_of_an_account_without_totp_ignores_a_code():
    existing_primary()
    assert register_number(totp=123456).status_code == 200
    assert Account.objects.count() == 1


def test_integer_codes_keep_their_leading_zeros():
    field = OneTimeCodeField()
    assert field.to_internal_value(1234) == "001234"
    assert field.to_internal_value("001234") == "001234"
    assert field.to_internal_value(1234567890) == "1234567890"
    assert field.to_internal_value("12345 67890") == "1234567890"


# --- Privacy and documentation --------------------------------------------------------------------


@pytest.mark.django_db
def test_no_secret_or_code_reaches_the_log(caplog):
    caplog.set_level(logging.DEBUG)
    primary = existing_primary()
    secret, confirmation_code, backup_codes = enrol(primary)
    code = fresh_code(secret)
    register_number(totp=code)
    register_number(totp=backup_codes[0])

    logged = caplog.text + "".join(str(vars(record)) for record in caplog.records)
    for value in (secret, confirmation_code, code, *backup_codes):
        assert value not in logged


@pytest.mark.django_db
def test_totp_and_its_441_are_documented(client):
    schema = client.get("/v1/openapi.json").json()
    operations = schema["paths"]["/v1/accounts/totp"]
    assert set(operations) >= {"post", "put", "delete"}
    assert all("signalserver extension" in operations[method]["description"] for method in ("post", "put", "delete"))
    assert "441" in schema["paths"]["/v1/registration"]["post"]["responses"]
    registration = schema["components"]["schemas"]["RegistrationRequest"]
    assert "totp" in registration["properties"]
