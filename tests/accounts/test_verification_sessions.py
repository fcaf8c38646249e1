"""Verification sessions: create, read, supply requested information."""

import base64
import logging
import os
import re
from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db.models import F

from accounts.models import VerificationSession
from signalserver.wire import b64decode_url
from tests.factories import AccountFactory

URL = "/v1/verification/session"
NUMBER = "+14155550100"
DEV_CAPTCHA = "dev-captcha-token-0123"
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def verification_settings(settings):
    settings.VERIFICATION_SENDER = "development"
    settings.DEV_VERIFICATION_CODE = "424242"
    settings.CAPTCHA_PROVIDER = "none"
    settings.DEV_CAPTCHA_TOKEN = DEV_CAPTCHA
    return settings


@pytest.fixture
def with_captcha(settings):
    settings.CAPTCHA_PROVIDER = "development"


def create(client, number=NUMBER, **fields):
    response = client.post(URL, {"number": number, **fields}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def patch(client, session, **fields):
    return client.patch(f"{URL}/{session['id']}", fields, format="json")


def row(session) -> VerificationSession:
    return VerificationSession.objects.get(pk=b64decode_url(session["id"]))


def rewind(session, seconds: int) -> None:
    """Let `seconds` pass for this session by moving all its timestamps into the past."""
    delta = timedelta(seconds=seconds)
    names = [
        "expires_at", "last_sms_at", "last_call_at", "last_attempt_at", "code_expires_at",
    ]
    VerificationSession.objects.filter(pk=b64decode_url(session["id"])).update(**{n: F(n) - delta for n in names})


def push_log_lines(caplog):
    return [r for r in caplog.records if r.name == "push.services"]


# --- Create ---------------------------------------------------------------------------------------


def test_create_returns_a_session_that_may_request_an_sms_at_once_when_captchas_are_off(client):
    response = client.post(URL, {"number": NUMBER}, format="json")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body == {
        "id": body["id"],
        "nextSms": 0,
        "nextCall": None,
        "nextVerificationAttempt": None,
        "allowedToRequestCode": True,
        "requestedInformation": [],
        "verified": False,
    }
    assert len(base64.urlsafe_b64decode(body["id"])) == 16
    assert body["id"].endswith("==")  # URL-safe base64 *with* padding, as Signal writes it
    assert row(body).number == NUMBER


def test_each_session_gets_a_new_random_id(client):
    assert create(client)["id"] != create(client)["id"]


def test_create_requests_a_captcha_when_a_provider_is_configured(client, with_captcha):
    body = create(client)

    assert body["requestedInformation"] == ["captcha"]
    assert body["allowedToRequestCode"] is False
    assert (body["nextSms"], body["nextCall"], body["nextVerificationAttempt"]) == (None, None, None)


def test_create_with_a_push_token_sends_a_push_challenge_and_requests_it_first(
    client, with_captcha, caplog, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.INFO, logger="push.services")
    with django_capture_on_commit_callbacks(execute=True):
        body = create(client, pushToken="fcm-token-abc", pushTokenType="FCM")

    assert body["requestedInformation"] == ["pushChallenge", "captcha"]
    challenge = row(body).push_challenge
    assert re.fullmatch(r"[0-9a-f]{32}", challenge)
    [line] = push_log_lines(caplog)
    assert "push delivery is disabled" in line.getMessage()
    logged = line.getMessage() + repr(vars(line))
    assert "fcm-token-abc" not in logged and challenge not in logged


def test_create_with_a_push_token_requests_nothing_when_captchas_are_off(
    client, caplog, django_capture_on_commit_callbacks
):
    # Push may be disabled (it is on the embedded defaults): a challenge that nobody can answer must
    # not be the only thing between the client and its code.
    caplog.set_level(logging.INFO, logger="push.services")
    with django_capture_on_commit_callbacks(execute=True):
        body = create(client, pushToken="apn-token", pushTokenType="apn")

    assert body["requestedInformation"] == []
    assert body["allowedToRequestCode"] is True
    assert len(push_log_lines(caplog)) == 1


def test_create_ignores_unknown_fields_nulls_and_the_informational_fields(client):
    body = create(
        client, pushToken=None, pushTokenType=None, pushChallenge=None, captcha=None, mcc="310", mnc="260", foo=[1]
    )

    assert body["allowedToRequestCode"] is True


@pytest.mark.parametrize(
    "fields", [{"pushToken": "token"}, {"pushTokenType": "fcm"}, {"pushToken": "token", "pushTokenType": "gcm"}]
)
def test_create_rejects_a_push_token_without_its_type_and_the_reverse(client, fields):
    response = client.post(URL, {"number": NUMBER, **fields}, format="json")

    assert response.status_code == 422
    assert "errors" in response.json()
    assert not VerificationSession.objects.exists()


@pytest.mark.parametrize("number", [None, "", "14155550100", "+1", "+1415555010000000", "+999123", 14155550100])
def test_create_rejects_a_missing_or_invalid_number(client, number):
    data = {} if number is None else {"number": number}
    response = client.post(URL, data, format="json")

    assert response.status_code == 422
    assert not VerificationSession.objects.exists()


def test_create_rejects_a_number_not_in_normalised_form_with_both_forms(client):
    response = client.post(URL, {"number": "+1 415 555 0100"}, format="json")

    assert response.status_code == 400
    assert response.json() == {"originalNumber": "+1 415 555 0100", "normalizedNumber": NUMBER}


def test_create_rejects_malformed_json(client):
    response = client.post(URL, b"{", content_type="application/json")

    assert response.status_code == 400


def test_sessions_look_the_same_whether_or_not_the_number_is_registered(client, with_captcha):
    AccountFactory(number="+14155550111")

    registered = create(client, "+14155550111")
    unregistered = create(client, "+14155550112")

    assert {**registered, "id": None} == {**unregistered, "id": None}


# --- Get ------------------------------------------------------------------------------------------


def test_get_returns_the_session(client):
    session = create(client)

    response = client.get(f"{URL}/{session['id']}")

    assert response.status_code == 200
    assert response.json() == session


def test_get_accepts_the_id_without_padding(client):
    session = create(client)

    response = client.get(f"{URL}/{session['id'].rstrip('=')}")

    assert response.status_code == 200
    assert response.json()["id"] == session["id"]


def test_get_unknown_session_is_404(client):
    unknown = base64.urlsafe_b64encode(os.urandom(16)).decode()

    response = client.get(f"{URL}/{unknown}")

    assert response.status_code == 404
    assert response.json() == {"code": 404, "message": "Verification session not found"}


def test_session_expires_ten_minutes_after_its_last_update(client):
    session = create(client)
    rewind(session, 9 * 60)
    assert client.get(f"{URL}/{session['id']}").status_code == 200

    rewind(session, 61)

    assert client.get(f"{URL}/{session['id']}").status_code == 404
    assert patch(client, session).status_code == 404


@pytest.mark.parametrize("bad_id", ["not!base64", "a+b=c", "%25%25", "ab=cd"])
def test_undecodable_session_id_is_422(client, bad_id):
    response = client.get(f"{URL}/{bad_id}")

    assert response.status_code == 422


@pytest.mark.parametrize("length", [1, 15, 17, 32])
def test_session_id_of_the_wrong_length_is_400(client, length):
    bad_id = base64.urlsafe_b64encode(os.urandom(length)).decode()

    assert client.get(f"{URL}/{bad_id}").status_code == 400
    assert patch(client, {"id": bad_id}).status_code == 400
    assert client.post(f"{URL}/{bad_id}/code", {"transport": "sms", "client": "ios"}, format="json").status_code == 400
    assert client.put(f"{URL}/{bad_id}/code", {"code": "123456"}, format="json").status_code == 400


def test_sessions_need_no_credentials_and_ignore_bad_ones(client):
    client.credentials(HTTP_AUTHORIZATION="Basic bm90OnZhbGlk")

    session = create(client)

    assert client.get(f"{URL}/{session['id']}").status_code == 200


# --- Patch: push challenge ------------------------------------------------------------------------


def test_a_correct_push_challenge_satisfies_push_and_captcha(client, with_captcha):
    session = create(client, pushToken="token", pushTokenType="fcm")

    response = patch(client, session, pushChallenge=row(session).push_challenge)

    assert response.status_code == 200
    body = response.json()
    assert body["requestedInformation"] == []
    assert body["allowedToRequestCode"] is True
    assert body["nextSms"] == 0
    assert client.get(f"{URL}/{session['id']}").json() == body


def test_a_wrong_push_challenge_is_403_with_the_session_as_body(client, with_captcha):
    session = create(client, pushToken="token", pushTokenType="fcm")

    response = patch(client, session, pushChallenge="0" * 32)

    assert response.status_code == 403
    assert response.json() == session
    assert row(session).push_challenge_solved is False


def test_a_push_challenge_without_any_push_token_is_403(client, with_captcha):
    session = create(client)

    response = patch(client, session, pushChallenge="")

    assert response.status_code == 403
    assert response.json()["requestedInformation"] == ["captcha"]


def test_a_wrong_push_challenge_stops_before_the_captcha_is_assessed(client, with_captcha):
    session = create(client, pushToken="token", pushTokenType="fcm")

    response = patch(client, session, pushChallenge="wrong", captcha=DEV_CAPTCHA)

    assert response.status_code == 403
    assert response.json()["requestedInformation"] == ["pushChallenge", "captcha"]


def test_push_challenges_are_ignored_once_one_was_accepted(client, with_captcha):
    session = create(client, pushToken="token", pushTokenType="fcm")
    assert patch(client, session, pushChallenge=row(session).push_challenge).status_code == 200

    response = patch(client, session, pushChallenge="wrong")

    assert response.status_code == 200
    assert response.json()["allowedToRequestCode"] is True


def test_a_push_token_on_update_requests_a_push_challenge_first_and_sends_it(
    client, with_captcha, caplog, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.INFO, logger="push.services")
    session = create(client)

    with django_capture_on_commit_callbacks(execute=True):
        response = patch(client, session, pushToken="apn-token", pushTokenType="APN")

    assert response.status_code == 200
    assert response.json()["requestedInformation"] == ["pushChallenge", "captcha"]
    assert len(push_log_lines(caplog)) == 1


def test_a_second_push_token_gets_the_same_challenge_again(
    client, with_captcha, caplog, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.INFO, logger="push.services")
    with django_capture_on_commit_callbacks(execute=True):
        session = create(client, pushToken="token-1", pushTokenType="fcm")
    challenge = row(session).push_challenge

    with django_capture_on_commit_callbacks(execute=True):
        response = patch(client, session, pushToken="token-2", pushTokenType="fcm")

    assert response.json()["requestedInformation"] == ["pushChallenge", "captcha"]
    assert row(session).push_challenge == challenge
    assert len(push_log_lines(caplog)) == 2
    assert patch(client, session, pushChallenge=challenge).json()["allowedToRequestCode"] is True


def test_a_push_token_after_the_information_was_supplied_requests_nothing_new(client):
    session = create(client)

    response = patch(client, session, pushToken="token", pushTokenType="fcm")

    assert response.status_code == 200
    assert response.json()["requestedInformation"] == []
    assert response.json()["allowedToRequestCode"] is True


def test_a_push_token_given_before_a_rejected_captcha_is_kept(client, with_captcha):
    session = create(client)

    response = patch(client, session, pushToken="token", pushTokenType="fcm", captcha="wrong")

    assert response.status_code == 403
    assert response.json()["requestedInformation"] == ["pushChallenge", "captcha"]
    assert client.get(f"{URL}/{session['id']}").json()["requestedInformation"] == ["pushChallenge", "captcha"]
    assert row(session).push_challenge


@pytest.mark.parametrize(
    "fields", [{"pushToken": "token"}, {"pushTokenType": "fcm"}, {"pushToken": "", "pushTokenType": "fcm"}]
)
def test_update_rejects_a_push_token_without_its_type_and_the_reverse(client, fields):
    session = create(client)

    response = patch(client, session, **fields)

    assert response.status_code == 422
    assert row(session).push_challenge == ""


def test_update_of_an_unknown_session_is_404(client):
    unknown = base64.urlsafe_b64encode(os.urandom(16)).decode()

    assert patch(client, {"id": unknown}, captcha="x").status_code == 404


def test_update_with_an_undecodable_id_is_422(client):
    assert patch(client, {"id": "***"}).status_code == 422


# --- Patch: captcha -------------------------------------------------------------------------------


def test_a_valid_captcha_satisfies_captcha_and_push_challenge(client, with_captcha):
    session = create(client, pushToken="token", pushTokenType="fcm")

    response = patch(client, session, captcha=f"signal-hcaptcha.site-key.registration.{DEV_CAPTCHA}")

    assert response.status_code == 200
    assert response.json()["requestedInformation"] == []
    assert response.json()["allowedToRequestCode"] is True


def test_a_raw_captcha_token_is_accepted_too(client, with_captcha):
    session = create(client)

    assert patch(client, session, captcha=DEV_CAPTCHA).json()["allowedToRequestCode"] is True


def test_a_rejected_captcha_is_403_with_the_session_as_body(client, with_captcha):
    session = create(client)

    response = patch(client, session, captcha="signal-hcaptcha.site-key.registration.wrong")

    assert response.status_code == 403
    assert response.json() == session


def test_a_captcha_is_ignored_when_captchas_are_off(client):
    session = create(client, pushToken="token", pushTokenType="fcm")

    response = patch(client, session, captcha="anything")

    assert response.status_code == 200
    assert response.json()["requestedInformation"] == []
    assert response.json()["allowedToRequestCode"] is True


def test_the_development_captcha_provider_is_refused_in_production(client, settings):
    session = create(client)
    settings.CAPTCHA_PROVIDER = "development"
    settings.PRODUCTION = True

    with pytest.raises(ImproperlyConfigured):
        patch(client, session, captcha=DEV_CAPTCHA)


# --- Schema ---------------------------------------------------------------------------------------


def test_the_openapi_schema_documents_every_verification_endpoint_and_status(client):
    schema = client.get("/v1/openapi.json").json()

    paths = schema["paths"]
    session_path = "/v1/verification/session/{session_id}"
    expected = {
        ("/v1/verification/session", "post"): {"200", "400", "422", "429"},
        (session_path, "get"): {"200", "400", "404", "422"},
        (session_path, "patch"): {"200", "400", "403", "404", "422", "429", "503"},
        (session_path + "/code", "post"): {"200", "400", "404", "409", "418", "422", "429", "440"},
        (session_path + "/code", "put"): {"200", "400", "404", "409", "422", "429"},
    }
    for (path, method), statuses in expected.items():
        operation = paths[path][method]
        # Besides their own: 403 for a banned address and 503 in an outage. Never 415: the body is
        # read as JSON whatever its Content-Type, over HTTP as over a socket.
        generic = {"403", "503"}
        assert set(operation["responses"]) == statuses | generic, (path, method)
        assert "security" not in operation or operation["security"] in ([], [{}])
    assert "Retry-After" in paths[session_path + "/code"]["post"]["responses"]["429"]["headers"]
    assert "Retry-After" in paths["/v1/verification/session"]["post"]["responses"]["429"]["headers"]
    documented = set(schema["components"]["schemas"]["VerificationSession"]["properties"])
    assert documented == set(create(client))
