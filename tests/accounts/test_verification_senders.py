"""Code delivery backends: Twilio (against a local Twilio API), console and development."""

import logging
import re
from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db.models import F

from accounts.models import VerificationSession
from signalserver.wire import b64decode_url
from tests.fakes.http import Reply, closed_port_url
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, FakeTwilio, twilio_error

URL = "/v1/verification/session"
NUMBER = "+14155550100"
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def verification_settings(settings):
    settings.CAPTCHA_PROVIDER = "none"
    settings.VERIFICATION_SENDER = "console"
    return settings


@pytest.fixture
def twilio(settings):
    with FakeTwilio() as fake:
        settings.VERIFICATION_SENDER = "twilio"
        settings.TWILIO_API_BASE = fake.url
        settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
        settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
        settings.TWILIO_FROM_NUMBER = FROM_NUMBER
        settings.TWILIO_MESSAGING_SERVICE_SID = ""
        settings.PROVIDER_TIMEOUT_SECONDS = 5
        yield fake


def create(client, number=NUMBER):
    response = client.post(URL, {"number": number}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def send(client, session, transport="sms", **headers):
    body = {"transport": transport, "client": "ios"}
    return client.post(f"{URL}/{session['id']}/code", body, format="json", **headers)


def submit(client, session, code):
    return client.put(f"{URL}/{session['id']}/code", {"code": code}, format="json")


def row(session) -> VerificationSession:
    return VerificationSession.objects.get(pk=b64decode_url(session["id"]))


def rewind(session, seconds: int) -> None:
    delta = timedelta(seconds=seconds)
    names = ["expires_at", "last_sms_at", "last_call_at", "last_attempt_at", "code_expires_at"]
    VerificationSession.objects.filter(pk=b64decode_url(session["id"])).update(**{n: F(n) - delta for n in names})


def sms_code(form: dict) -> str:
    return re.search(r"\d{6}", form["Body"]).group()


# --- Twilio ---------------------------------------------------------------------------------------


def test_twilio_sends_the_sms_code_with_basic_auth_and_that_code_verifies(client, twilio):
    session = create(client)

    response = send(client, session, HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9")

    assert response.status_code == 200
    [request] = twilio.requests
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    [form] = twilio.messages
    assert (form["To"], form["From"]) == (NUMBER, FROM_NUMBER)
    assert "MessagingServiceSid" not in form
    assert submit(client, session, sms_code(form)).json()["verified"] is True


def test_twilio_uses_the_messaging_service_instead_of_a_sender_number_when_configured(client, twilio, settings):
    settings.TWILIO_MESSAGING_SERVICE_SID = "MG" + "1" * 32
    session = create(client)

    assert send(client, session).status_code == 200

    [form] = twilio.messages
    assert form["MessagingServiceSid"] == "MG" + "1" * 32
    assert "From" not in form


def test_twilio_voice_call_reads_the_digits_of_the_code_one_by_one(client, twilio):
    session = create(client)
    send(client, session)
    rewind(session, 60)

    response = send(client, session, transport="voice")

    assert response.status_code == 200
    [call] = twilio.calls
    assert twilio.requests[-1].path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
    assert (call["To"], call["From"]) == (NUMBER, FROM_NUMBER)
    match = re.fullmatch(r"<Response><Say>(\d( \d){5})</Say></Response>", call["Twiml"])
    assert match
    assert submit(client, session, match.group(1).replace(" ", "")).json()["verified"] is True


def test_a_new_code_replaces_the_previous_one(client, twilio):
    session = create(client)
    send(client, session)
    rewind(session, 60)
    send(client, session)
    first, second = (sms_code(form) for form in twilio.messages)
    if first == second:
        pytest.skip("the two random codes happened to be equal")

    assert submit(client, session, first).json()["verified"] is False
    assert submit(client, session, second).json()["verified"] is True


@pytest.mark.parametrize("error_code", [21211, 21614, 21217])
def test_twilio_invalid_number_errors_are_a_permanent_illegal_argument(client, twilio, error_code):
    twilio.next_replies.append(twilio_error(400, error_code, f"The 'To' number {NUMBER} is not valid."))
    session = create(client)

    response = send(client, session)

    assert response.status_code == 440
    assert response.json() == {"reason": "illegalArgument", "permanentFailure": True}


@pytest.mark.parametrize("error_code", [21408, 21610, 21612])
def test_other_twilio_client_errors_are_a_permanent_provider_rejection(client, twilio, error_code):
    twilio.next_replies.append(twilio_error(400, error_code, "Permission to send an SMS has not been enabled"))
    session = create(client)

    response = send(client, session)

    assert response.status_code == 440
    assert response.json() == {"reason": "providerRejected", "permanentFailure": True}


def test_after_a_permanent_refusal_code_requests_get_440_without_asking_twilio(client, twilio):
    twilio.invalid_numbers.add(NUMBER)
    session = create(client)
    assert send(client, session).json() == {"reason": "illegalArgument", "permanentFailure": True}

    again = send(client, session)
    voice = send(client, session, transport="voice")

    assert again.status_code == voice.status_code == 440
    assert again.json() == voice.json() == {"reason": "illegalArgument", "permanentFailure": True}
    assert len(twilio.requests) == 1
    body = client.get(f"{URL}/{session['id']}").json()
    assert (body["nextSms"], body["nextCall"], body["nextVerificationAttempt"]) == (None, None, None)
    stored = row(session)
    assert (stored.sms_sent, stored.code_hash, stored.sender_refused) == (0, "", True)


@pytest.mark.parametrize("status", [500, 503, 429])
def test_twilio_server_errors_and_throttling_are_a_temporary_unavailability(client, twilio, status):
    twilio.next_replies.append(twilio_error(status, 20429 if status == 429 else 20500, "Try again"))
    session = create(client)

    response = send(client, session)

    assert response.status_code == 440
    assert response.json() == {"reason": "providerUnavailable", "permanentFailure": False}
    # The failed send is not counted: the client may retry at once, and then it works.
    assert client.get(f"{URL}/{session['id']}").json()["nextSms"] == 0
    assert send(client, session).status_code == 200
    assert row(session).sms_sent == 1


def test_twilio_refusing_our_credentials_is_a_temporary_unavailability(client, twilio, settings):
    settings.TWILIO_AUTH_TOKEN = "wrong-token"
    session = create(client)

    response = send(client, session)

    assert response.status_code == 440
    assert response.json() == {"reason": "providerUnavailable", "permanentFailure": False}
    assert row(session).sender_refused is False


def test_twilio_unreachable_is_a_temporary_unavailability(client, twilio, settings):
    settings.TWILIO_API_BASE = closed_port_url()
    session = create(client)

    response = send(client, session)

    assert response.status_code == 440
    assert response.json() == {"reason": "providerUnavailable", "permanentFailure": False}
    assert row(session).sms_sent == 0


def test_twilio_answering_too_slowly_is_a_temporary_unavailability(client, twilio, settings):
    settings.PROVIDER_TIMEOUT_SECONDS = 1
    twilio.next_replies.append(Reply(201, {"sid": "SM1"}, delay=3))
    session = create(client)

    response = send(client, session)

    assert response.status_code == 440
    assert response.json() == {"reason": "providerUnavailable", "permanentFailure": False}


def test_twilio_failures_never_log_the_number(client, twilio, caplog):
    caplog.set_level(logging.DEBUG)
    twilio.invalid_numbers.add(NUMBER)
    session = create(client)

    send(client, session)

    assert any(r.name == "accounts.verification.senders" for r in caplog.records)
    assert NUMBER not in caplog.text
    assert all(NUMBER not in repr(vars(r)) for r in caplog.records)


def test_twilio_without_credentials_is_a_configuration_error(client, twilio, settings):
    settings.TWILIO_AUTH_TOKEN = ""
    session = create(client)

    with pytest.raises(ImproperlyConfigured):
        send(client, session)
    assert twilio.requests == []


def test_twilio_voice_without_a_sender_number_is_a_configuration_error_and_uncounted(client, twilio, settings):
    settings.TWILIO_FROM_NUMBER = ""
    settings.TWILIO_MESSAGING_SERVICE_SID = "MG" + "1" * 32
    session = create(client)
    send(client, session)
    rewind(session, 60)

    with pytest.raises(ImproperlyConfigured):
        send(client, session, transport="voice")
    assert row(session).calls_made == 0


# --- Console and development ----------------------------------------------------------------------


def sender_log(caplog):
    return [r for r in caplog.records if r.name == "accounts.verification.senders"]


def test_the_console_sender_logs_no_code_without_debug_and_never_the_number(client, caplog, settings):
    settings.DEBUG = False
    caplog.set_level(logging.INFO, logger="accounts.verification.senders")
    session = create(client)

    send(client, session)

    [line] = sender_log(caplog)
    text = line.getMessage() + repr(vars(line))
    assert "sms" in line.getMessage()
    assert not re.search(r"\d{6}", line.getMessage())
    assert NUMBER not in text and NUMBER[1:] not in text


def test_the_console_sender_logs_the_code_with_debug_but_never_the_number(client, caplog, settings):
    settings.DEBUG = True
    caplog.set_level(logging.INFO, logger="accounts.verification.senders")
    session = create(client)

    send(client, session)

    [line] = sender_log(caplog)
    text = line.getMessage() + repr(vars(line))
    assert NUMBER not in text and NUMBER[1:] not in text
    code = re.search(r"\b\d{6}\b", line.getMessage()).group()
    assert submit(client, session, code).json()["verified"] is True


def test_the_development_sender_always_sends_the_configured_code(client, settings):
    settings.VERIFICATION_SENDER = "development"
    settings.DEV_VERIFICATION_CODE = "777777"
    session = create(client)

    send(client, session)

    assert submit(client, session, "777777").json()["verified"] is True


def test_the_development_sender_is_refused_in_production(client, settings):
    settings.VERIFICATION_SENDER = "development"
    settings.DEV_VERIFICATION_CODE = "777777"
    session = create(client)
    settings.PRODUCTION = True

    with pytest.raises(ImproperlyConfigured):
        send(client, session)
    assert row(session).sms_sent == 0


def test_the_development_sender_needs_a_code(client, settings):
    settings.VERIFICATION_SENDER = "development"
    settings.DEV_VERIFICATION_CODE = ""
    session = create(client)

    with pytest.raises(ImproperlyConfigured):
        send(client, session)


def test_an_unknown_sender_is_a_configuration_error(client, settings):
    settings.VERIFICATION_SENDER = "carrier-pigeon"
    session = create(client)

    with pytest.raises(ImproperlyConfigured):
        send(client, session)
