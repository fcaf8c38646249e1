"""Verification codes: requesting them (SMS, voice, waits) and submitting them."""

import base64
import os
from datetime import timedelta

import pytest
from django.db.models import F
from django.utils import timezone

from accounts.verification import services as verification
from accounts.models import PhoneNumberIdentifier, RegistrationRecoveryPassword, VerificationSession
from signalserver.errors import BadRequest, UnprocessableEntity
from signalserver.wire import b64decode_url

URL = "/v1/verification/session"
NUMBER = "+14155550100"
CODE = "424242"
WRONG = "000000"
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def verification_settings(settings):
    settings.VERIFICATION_SENDER = "development"
    settings.DEV_VERIFICATION_CODE = CODE
    settings.CAPTCHA_PROVIDER = "none"
    return settings


def create(client, number=NUMBER, **fields):
    response = client.post(URL, {"number": number, **fields}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def send(client, session, transport="sms", **headers):
    return client.post(
        f"{URL}/{session['id']}/code", {"transport": transport, "client": "android-2021-03"}, format="json", **headers
    )


def submit(client, session, code):
    return client.put(f"{URL}/{session['id']}/code", {"code": code}, format="json")


def row(session) -> VerificationSession:
    return VerificationSession.objects.get(pk=b64decode_url(session["id"]))


def rewind(session, seconds: int) -> None:
    """Let `seconds` pass for this session by moving all its timestamps into the past."""
    delta = timedelta(seconds=seconds)
    names = [
        "expires_at", "last_sms_at", "last_call_at", "last_attempt_at", "code_expires_at",
    ]
    VerificationSession.objects.filter(pk=b64decode_url(session["id"])).update(**{n: F(n) - delta for n in names})


# --- Requesting a code ----------------------------------------------------------------------------


def test_an_sms_code_request_answers_with_the_next_waits(client):
    session = create(client)

    response = send(client, session)

    assert response.status_code == 200
    body = response.json()
    assert (body["nextSms"], body["nextCall"], body["nextVerificationAttempt"]) == (60, 60, 0)
    assert body["allowedToRequestCode"] is True and body["verified"] is False
    stored = row(session)
    assert stored.sms_sent == 1
    assert len(stored.code_hash) == 64 and CODE not in stored.code_hash  # an HMAC, never the code


def test_transport_names_match_case_insensitively(client):
    session = create(client)

    assert send(client, session, transport="SMS").status_code == 200


def test_a_code_request_while_information_is_requested_is_409_with_the_session(client, settings):
    settings.CAPTCHA_PROVIDER = "development"
    settings.DEV_CAPTCHA_TOKEN = "captcha"
    session = create(client)

    response = send(client, session)

    assert response.status_code == 409
    assert response.json() == session
    assert row(session).sms_sent == 0


def test_a_voice_call_before_any_sms_is_418_with_the_session(client):
    session = create(client)

    response = send(client, session, transport="voice")

    assert response.status_code == 418
    assert response.json() == session
    assert row(session).calls_made == 0


def test_an_sms_requested_too_early_is_429_with_retry_after_and_the_session(client):
    session = create(client)
    send(client, session)

    response = send(client, session)

    assert response.status_code == 429
    assert response["Retry-After"] == "60"
    assert response.json()["nextSms"] == 60
    assert response.json()["id"] == session["id"]


def test_sms_waits_grow_and_end_after_four_messages(client):
    session = create(client)
    for wait in (60, 300, 900):
        assert send(client, session).status_code == 200
        assert client.get(f"{URL}/{session['id']}").json()["nextSms"] == wait
        rewind(session, wait - 1)
        assert send(client, session)["Retry-After"] == "1"
        rewind(session, 1)

    last = send(client, session)

    assert last.status_code == 200
    assert last.json()["nextSms"] is None
    refused = send(client, session)
    assert refused.status_code == 429
    assert "Retry-After" not in refused
    assert refused.json()["nextSms"] is None
    assert row(session).sms_sent == 4


def test_voice_calls_follow_an_sms_after_a_wait_and_end_after_three(client):
    session = create(client)
    send(client, session)
    assert send(client, session, transport="voice")["Retry-After"] == "60"
    for wait in (60, 300, 900):
        rewind(session, wait)
        response = send(client, session, transport="voice")
        assert response.status_code == 200

    assert response.json()["nextCall"] is None
    refused = send(client, session, transport="voice")
    assert refused.status_code == 429 and "Retry-After" not in refused
    assert row(session).calls_made == 3


def test_a_code_request_on_a_verified_session_is_409(client):
    session = create(client)
    send(client, session)
    submit(client, session, CODE)

    response = send(client, session)

    assert response.status_code == 409
    assert response.json()["verified"] is True


def test_a_code_request_for_an_unknown_session_is_404(client):
    unknown = base64.urlsafe_b64encode(os.urandom(16)).decode()

    assert send(client, {"id": unknown}).status_code == 404


def test_a_code_request_for_an_undecodable_id_is_422(client):
    assert send(client, {"id": "!!"}).status_code == 422


@pytest.mark.parametrize(
    "body", [{}, {"client": "ios"}, {"transport": "sms"}, {"transport": "carrier-pigeon", "client": "ios"}]
)
def test_a_code_request_needs_a_known_transport_and_a_client(client, body):
    session = create(client)

    response = client.post(f"{URL}/{session['id']}/code", body, format="json")

    assert response.status_code == 422
    assert row(session).sms_sent == 0


def test_a_session_with_pending_waits_lives_until_they_end_plus_ten_minutes(client):
    session = create(client)
    for wait in (60, 300):
        send(client, session)
        rewind(session, wait)
    send(client, session)  # the third SMS: the fourth waits 15 minutes

    rewind(session, 24 * 60)
    assert client.get(f"{URL}/{session['id']}").json()["nextSms"] == 0
    rewind(session, 61)
    assert client.get(f"{URL}/{session['id']}").status_code == 404


# --- Submitting a code ----------------------------------------------------------------------------


def test_the_right_code_verifies_the_session(client):
    session = create(client)
    send(client, session)

    response = submit(client, session, CODE)

    assert response.status_code == 200
    body = response.json()
    assert body["verified"] is True
    assert (body["nextSms"], body["nextCall"], body["nextVerificationAttempt"]) == (None, None, None)
    assert row(session).code_hash == ""


def test_verifying_deletes_the_recovery_password_of_that_number_only(client):
    mine = PhoneNumberIdentifier.objects.create(number=NUMBER)
    other = PhoneNumberIdentifier.objects.create(number="+14155550199")
    for pni in (mine.pni, other.pni):
        RegistrationRecoveryPassword.objects.create(pni=pni, password_hash="2." + "0" * 64, salt="0" * 32)
    session = create(client)
    send(client, session)

    submit(client, session, CODE)

    assert list(RegistrationRecoveryPassword.objects.values_list("pni", flat=True)) == [other.pni]


def test_a_wrong_code_is_not_an_error_and_does_not_verify(client):
    session = create(client)
    send(client, session)

    response = submit(client, session, WRONG)

    assert response.status_code == 200
    assert response.json()["verified"] is False
    assert response.json()["nextVerificationAttempt"] == 0  # the first retry is immediate (typos)
    assert row(session).failed_attempts == 1


def test_a_code_is_checked_with_surrounding_whitespace_removed(client):
    session = create(client)
    send(client, session)

    assert submit(client, session, f" {CODE}\n").json()["verified"] is True


def test_submitting_before_any_code_was_sent_is_409_with_the_session(client):
    session = create(client)

    response = submit(client, session, CODE)

    assert response.status_code == 409
    assert response.json() == session


def test_submitting_to_a_verified_session_is_409(client):
    session = create(client)
    send(client, session)
    submit(client, session, CODE)

    response = submit(client, session, CODE)

    assert response.status_code == 409
    assert response.json()["verified"] is True


def test_an_expired_code_is_409_and_a_new_one_can_be_requested(client):
    session = create(client)
    send(client, session)
    rewind(session, 10 * 60)

    response = submit(client, session, CODE)

    assert response.status_code == 409
    assert response.json()["nextVerificationAttempt"] is None
    assert response.json()["nextSms"] == 0
    assert send(client, session).status_code == 200
    assert submit(client, session, CODE).json()["verified"] is True


def test_wrong_codes_make_the_next_attempt_wait_longer_until_the_session_is_exhausted(client):
    session = create(client)
    send(client, session)
    assert submit(client, session, WRONG).json()["nextVerificationAttempt"] == 0
    for wait in (30, 60, 300, 600):
        response = submit(client, session, WRONG)
        assert response.json()["nextVerificationAttempt"] == wait
        early = submit(client, session, CODE)  # even the right code must wait
        assert early.status_code == 429
        assert early["Retry-After"] == str(wait)
        assert early.json()["verified"] is False
        rewind(session, wait)
        if wait >= 300:  # a fresh code, so it is still valid after the long waits
            send(client, session)

    last = submit(client, session, WRONG)

    assert last.status_code == 200
    body = last.json()
    assert (body["nextVerificationAttempt"], body["nextSms"], body["nextCall"]) == (None, None, None)
    assert body["allowedToRequestCode"] is False and body["requestedInformation"] == []
    exhausted = submit(client, session, CODE)
    assert exhausted.status_code == 429 and "Retry-After" not in exhausted
    assert exhausted.json()["verified"] is False
    assert send(client, session).status_code == 429
    assert row(session).failed_attempts == 6


def test_an_exhausted_session_stays_exhausted_after_new_information(client, settings):
    session = create(client)
    send(client, session)
    VerificationSession.objects.filter(pk=b64decode_url(session["id"])).update(
        failed_attempts=verification.MAX_WRONG_CODES, allowed_to_request_code=False
    )
    settings.CAPTCHA_PROVIDER = "development"
    settings.DEV_CAPTCHA_TOKEN = "captcha"

    response = client.patch(f"{URL}/{session['id']}", {"captcha": "captcha"}, format="json")

    assert response.json()["allowedToRequestCode"] is False


@pytest.mark.parametrize("body", [{}, {"code": ""}, {"code": "   "}, {"code": None}, {"code": ["1"]}])
def test_a_missing_or_blank_code_is_422(client, body):
    session = create(client)
    send(client, session)

    assert client.put(f"{URL}/{session['id']}/code", body, format="json").status_code == 422


def test_an_overlong_code_is_400(client):
    session = create(client)
    send(client, session)

    response = submit(client, session, "1" * 33)

    assert response.status_code == 400
    assert row(session).failed_attempts == 0


def test_submitting_to_an_unknown_or_expired_session_is_404(client):
    session = create(client)
    send(client, session)
    rewind(session, 3600)

    assert submit(client, session, CODE).status_code == 404


# --- For registration and housekeeping ------------------------------------------------------------


def test_get_verified_session_finds_only_live_verified_sessions(client):
    session = create(client)
    raw_id = b64decode_url(session["id"])
    send(client, session)
    assert verification.get_verified_session(raw_id) is None

    submit(client, session, CODE)
    assert verification.get_verified_session(raw_id).number == NUMBER

    rewind(session, 3600)
    assert verification.get_verified_session(raw_id) is None


def test_session_id_from_text_tells_undecodable_from_wrong_length():
    raw = os.urandom(16)
    assert verification.session_id_from_text(base64.urlsafe_b64encode(raw).decode()) == raw
    with pytest.raises(UnprocessableEntity):
        verification.session_id_from_text("a/b+")
    with pytest.raises(BadRequest):
        verification.session_id_from_text(base64.urlsafe_b64encode(raw[:8]).decode())


def test_delete_expired_sessions_keeps_live_ones(client):
    live, old = create(client), create(client)
    rewind(old, 3600)

    assert verification.delete_expired_sessions() == 1

    assert list(VerificationSession.objects.values_list("pk", flat=True)) == [b64decode_url(live["id"])]
    assert VerificationSession.objects.get().expires_at > timezone.now()
