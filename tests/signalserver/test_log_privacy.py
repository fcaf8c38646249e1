"""The logs never carry phone numbers, passwords, keys, tokens or message bodies (docs/architecture.md §8)."""

import base64
import io
import logging
import os

import pytest

from signalserver.logging import RedactingFilter
from signalserver.wire import b64encode
from tests.crypto import IdentityKeyPair, signed_ec_prekey, signed_kem_prekey
from tests.factories import basic_auth

NUMBER = "+14155550142"
PASSWORD = "a-very-secret-device-password-7f3a"
CODE = "864209"


@pytest.fixture
def captured_log(settings):
    """What the configured console handler writes, filter and formatter included."""
    handler = next(h for h in logging.getLogger().handlers if any(isinstance(f, RedactingFilter) for f in h.filters))
    buffer = io.StringIO()
    previous_stream, previous_level = handler.setStream(buffer), logging.getLogger().level
    logging.getLogger().setLevel(logging.DEBUG)
    yield buffer
    handler.setStream(previous_stream)
    logging.getLogger().setLevel(previous_level)


@pytest.mark.django_db
def test_registering_an_account_logs_none_of_its_secrets(client, settings, captured_log):
    settings.VERIFICATION_SENDER = "development"
    settings.DEV_VERIFICATION_CODE = CODE
    settings.CAPTCHA_PROVIDER = "none"
    aci_identity, pni_identity = IdentityKeyPair(), IdentityKeyPair()
    access_key, recovery_password = os.urandom(16), os.urandom(32)

    session = client.post("/v1/verification/session", {"number": NUMBER}, format="json").json()
    session_url = f"/v1/verification/session/{session['id']}"
    assert client.post(f"{session_url}/code", {"transport": "sms", "client": "android"}, format="json").status_code == 200
    assert client.put(f"{session_url}/code", {"code": CODE}, format="json").json()["verified"] is True

    body = {
        "sessionId": session["id"],
        "skipDeviceTransfer": True,
        "accountAttributes": {
            "fetchesMessages": True,
            "registrationId": 1001,
            "pniRegistrationId": 1002,
            "capabilities": {"spqr": True},
            "unidentifiedAccessKey": b64encode(access_key),
            "recoveryPassword": b64encode(recovery_password),
            "registrationLock": "9f" * 32,
        },
        "aciIdentityKey": b64encode(aci_identity.public_key),
        "pniIdentityKey": b64encode(pni_identity.public_key),
        "aciSignedPreKey": signed_ec_prekey(aci_identity),
        "pniSignedPreKey": signed_ec_prekey(pni_identity),
        "aciPqLastResortPreKey": signed_kem_prekey(aci_identity),
        "pniPqLastResortPreKey": signed_kem_prekey(pni_identity),
    }
    response = client.post("/v1/registration", body, format="json", HTTP_AUTHORIZATION=basic_auth(NUMBER, PASSWORD))
    assert response.status_code == 200, response.content
    aci = response.json()["uuid"]
    client.credentials(HTTP_AUTHORIZATION=basic_auth(aci, PASSWORD))
    assert client.get("/v1/accounts/whoami").status_code == 200
    # A failed request with a body full of secrets must not echo them either.
    client.put("/v1/accounts/attributes", {**body["accountAttributes"], "registrationId": -1}, format="json")

    output = captured_log.getvalue()
    assert '"route": "/v1/registration"' in output  # the request log is there, so the capture works
    secrets = [
        NUMBER,
        NUMBER[1:],
        PASSWORD,
        CODE,
        basic_auth(NUMBER, PASSWORD).split()[1],
        "9f" * 32,
        session["id"],
        b64encode(access_key),
        b64encode(recovery_password),
        b64encode(aci_identity.public_key),
        b64encode(pni_identity.public_key),
        body["aciSignedPreKey"]["publicKey"],
        body["aciSignedPreKey"]["signature"],
        body["pniPqLastResortPreKey"]["publicKey"][:40],
    ]
    for secret in secrets:
        assert secret not in output, f"{secret[:12]}… appears in the log"


def test_filter_scrubs_values_that_slip_into_a_message(captured_log):
    key = base64.b64encode(os.urandom(33)).decode()
    logging.getLogger("anything").warning("sent to %s with key %s and password=%s", NUMBER, key, PASSWORD)
    logging.getLogger("anything").info("extra fields", extra={"password": PASSWORD, "phone": NUMBER})
    output = captured_log.getvalue()
    assert NUMBER not in output and key not in output and PASSWORD not in output
    assert "[redacted]" in output


def test_djangos_log_line_of_a_server_error_names_no_path_or_request(rf, captured_log):
    # What django.utils.log.log_response writes when a view fails: the path in the message and
    # the request itself as an extra field (written as its repr, which holds the path).
    import uuid

    aci = str(uuid.uuid4())
    request = rf.put(f"/v1/messages/{aci}")
    logging.getLogger("django.request").error(
        "Internal Server Error: %s", request.path, extra={"status_code": 500, "request": request}
    )
    output = captured_log.getvalue()
    assert "Internal Server Error" in output
    assert aci not in output and "ASGIRequest" not in output and "WSGIRequest" not in output
