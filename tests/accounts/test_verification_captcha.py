"""Captchas in verification sessions, assessed by hCaptcha (a local siteverify endpoint)."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.fakes.hcaptcha import SECRET, SITE_KEY, FakeHCaptcha
from tests.fakes.http import Reply, closed_port_url

URL = "/v1/verification/session"
NUMBER = "+14155550100"
# hCaptcha tokens are JWT-like and contain dots themselves.
TOKEN = "P1_eyJ0eXAiOiJKV1QifQ.eyJwYXNza2V5IjoiYWJjIn0.c2lnbmF0dXJl"
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def hcaptcha(settings):
    with FakeHCaptcha() as fake:
        settings.CAPTCHA_PROVIDER = "hcaptcha"
        settings.HCAPTCHA_SECRET = SECRET
        settings.HCAPTCHA_SITE_KEY = SITE_KEY
        settings.HCAPTCHA_VERIFY_URL = fake.verify_url
        settings.PROVIDER_TIMEOUT_SECONDS = 5
        settings.VERIFICATION_SENDER = "development"
        settings.DEV_VERIFICATION_CODE = "424242"
        fake.solved.add(TOKEN)
        yield fake


def create(client):
    response = client.post(URL, {"number": NUMBER, "pushToken": "token", "pushTokenType": "fcm"}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def patch(client, session, **fields):
    return client.patch(f"{URL}/{session['id']}", fields, format="json")


def test_a_solved_hcaptcha_in_signal_format_allows_code_requests(client, hcaptcha):
    session = create(client)
    assert session["requestedInformation"] == ["pushChallenge", "captcha"]

    response = patch(client, session, captcha=f"signal-hcaptcha.{SITE_KEY}.registration.{TOKEN}")

    assert response.status_code == 200
    assert response.json()["requestedInformation"] == []
    assert response.json()["allowedToRequestCode"] is True
    [request] = hcaptcha.requests
    assert request.form == {"secret": SECRET, "response": TOKEN, "remoteip": "127.0.0.1", "sitekey": SITE_KEY}
    code = client.post(f"{URL}/{session['id']}/code", {"transport": "sms", "client": "ios"}, format="json")
    assert code.status_code == 200


def test_a_raw_hcaptcha_token_is_accepted(client, hcaptcha):
    session = create(client)

    response = patch(client, session, captcha=TOKEN)

    assert response.json()["allowedToRequestCode"] is True
    assert hcaptcha.requests[0].form["response"] == TOKEN


def test_an_unsolved_hcaptcha_is_403_with_the_session_as_body(client, hcaptcha):
    session = create(client)

    response = patch(client, session, captcha="signal-hcaptcha.site.registration.unsolved")

    assert response.status_code == 403
    assert response.json() == session
    assert hcaptcha.requests[0].form["response"] == "unsolved"


def test_a_captcha_is_assessed_even_after_the_information_was_supplied(client, hcaptcha):
    session = create(client)
    patch(client, session, captcha=TOKEN)

    response = patch(client, session, captcha="unsolved")

    assert response.status_code == 403
    assert response.json()["allowedToRequestCode"] is True


@pytest.mark.parametrize(
    "reply",
    [
        Reply(500, {"error": "internal"}),
        Reply(200, b"<html>maintenance</html>", headers={"Content-Type": "text/html"}),
        Reply(200, {"unexpected": True}),
    ],
)
def test_hcaptcha_without_a_verdict_is_503_and_changes_nothing(client, hcaptcha, reply):
    session = create(client)
    hcaptcha.next_replies.append(reply)

    response = patch(client, session, captcha=TOKEN)

    assert response.status_code == 503
    assert response.json() == {"code": 503, "message": "captcha provider unavailable"}
    assert client.get(f"{URL}/{session['id']}").json()["requestedInformation"] == ["pushChallenge", "captcha"]


def test_hcaptcha_unreachable_is_503(client, settings):
    settings.HCAPTCHA_VERIFY_URL = closed_port_url() + "/siteverify"
    session = create(client)

    assert patch(client, session, captcha=TOKEN).status_code == 503


def test_hcaptcha_refusing_our_secret_is_503_not_the_clients_fault(client, settings):
    settings.HCAPTCHA_SECRET = "0x-wrong-secret"
    session = create(client)

    response = patch(client, session, captcha=TOKEN)

    assert response.status_code == 503


def test_hcaptcha_without_a_secret_is_a_configuration_error(client, settings, hcaptcha):
    settings.HCAPTCHA_SECRET = ""

    with pytest.raises(ImproperlyConfigured):
        client.post(URL, {"number": NUMBER}, format="json")
    assert hcaptcha.requests == []


def test_an_unknown_captcha_provider_is_a_configuration_error(client, settings):
    settings.CAPTCHA_PROVIDER = "crystal-ball"

    with pytest.raises(ImproperlyConfigured):
        client.post(URL, {"number": NUMBER}, format="json")
