"""The fake FCM speaks well enough for the real firebase-admin client (7.7.0) to use it.

firebase-admin is pointed at the fake by its service-account `token_uri` (OAuth) and by
`firebase_admin.messaging._MessagingService.FCM_URL` (the send endpoint template, read when an
app's messaging service is first created); see tests/fakes/fcm.py."""

import itertools
import time

import firebase_admin
import google.auth.exceptions
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from firebase_admin import credentials, exceptions, messaging

from tests.fakes.fcm import PROJECT_ID, fcm_server  # noqa: F401 (fixture)

# firebase-admin 7.7 deprecates Message.token for Message.fid (a Firebase installation id);
# Signal clients register FCM registration tokens, which still go in `token`.
pytestmark = pytest.mark.filterwarnings("ignore:Message.token is deprecated:DeprecationWarning")

_app_names = itertools.count()


@pytest.fixture
def make_app(fcm_server, monkeypatch):  # noqa: F811
    """`make_app(credential_dict=None, project_id=PROJECT_ID)`: a firebase app that talks to the fake."""
    monkeypatch.setattr(messaging._MessagingService, "FCM_URL", fcm_server.fcm_url_template)
    apps = []

    def make(credential=None, project_id=PROJECT_ID):
        app = firebase_admin.initialize_app(
            credentials.Certificate(credential or fcm_server.service_account()),
            name=f"fake-fcm-{next(_app_names)}",
            options={"projectId": project_id},
        )
        apps.append(app)
        return app

    yield make
    for app in apps:
        firebase_admin.delete_app(app)


@pytest.fixture
def app(make_app):
    return make_app()


def push(token, **data):
    return messaging.Message(token=token, data=data, android=messaging.AndroidConfig(priority="high", ttl=3600))


def test_a_message_is_accepted_and_recorded_with_its_data_and_priority(fcm_server, app):  # noqa: F811
    name = messaging.send(push("token-1", type="new-message"), app=app)

    assert name == f"projects/{PROJECT_ID}/messages/1"
    [message] = fcm_server.wait_for(1)
    assert (message.token, message.data, message.priority, message.ttl) == (
        "token-1",
        {"type": "new-message"},
        "high",
        "3600s",
    )


def test_an_unregistered_token_raises_unregistered_error(fcm_server, app):  # noqa: F811
    fcm_server.unregister("gone")

    with pytest.raises(messaging.UnregisteredError):
        messaging.send(push("gone"), app=app)
    assert fcm_server.messages == []


def test_a_503_is_retried_by_the_client_and_then_succeeds(fcm_server, app):  # noqa: F811
    fcm_server.fail_next(1, status=503)

    messaging.send(push("token-1"), app=app)

    assert fcm_server.send_requests == 2
    assert [m.token for m in fcm_server.messages] == ["token-1"]


def test_a_429_without_retry_after_raises_quota_exceeded_at_once(fcm_server, app):  # noqa: F811
    fcm_server.fail_next(1, status=429, retry_after=None)

    with pytest.raises(messaging.QuotaExceededError):
        messaging.send(push("token-1"), app=app)
    assert fcm_server.send_requests == 1
    assert fcm_server.messages == []


def test_a_429_with_retry_after_is_retried_after_that_delay(fcm_server, app):  # noqa: F811
    messaging.send(push("warm-up"), app=app)
    fcm_server.fail_next(1, status=429)  # Retry-After: 1
    started = time.monotonic()

    messaging.send(push("token-1"), app=app)

    assert fcm_server.messages[-1].received_at - started >= 1
    assert fcm_server.send_requests == 3


def test_the_oauth_token_is_fetched_once_and_reused_across_sends(fcm_server, app):  # noqa: F811
    for i in range(20):
        messaging.send(push(f"token-{i}"), app=app)

    assert len(fcm_server.wait_for(20)) == 20
    assert fcm_server.token_requests == 1


def test_a_rejected_access_token_is_refreshed_once(fcm_server, app):  # noqa: F811
    messaging.send(push("token-1"), app=app)
    fcm_server.revoke_tokens()

    messaging.send(push("token-2"), app=app)

    assert fcm_server.token_requests == 2
    assert len(fcm_server.messages) == 2


def test_send_each_delivers_100_messages_concurrently(fcm_server, app):  # noqa: F811
    messaging.send(push("warm-up"), app=app)  # google-auth does not serialise a first refresh
    messages = [push(f"token-{i}", n=str(i)) for i in range(100)]

    batch = messaging.send_each(messages, app=app)

    assert batch.success_count == 100
    received = fcm_server.wait_for(101)
    assert {m.token for m in received} == {"warm-up"} | {f"token-{i}" for i in range(100)}
    assert fcm_server.token_requests == 1


def test_a_key_the_fake_does_not_know_is_refused_at_the_token_endpoint(fcm_server, make_app):  # noqa: F811
    forged = fcm_server.service_account()
    forged["private_key"] = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )

    with pytest.raises(google.auth.exceptions.RefreshError, match="invalid_grant"):
        messaging.send(push("token-1"), app=make_app(forged))
    assert fcm_server.messages == []


def test_sending_for_another_project_is_permission_denied(fcm_server, make_app):  # noqa: F811
    with pytest.raises(exceptions.PermissionDeniedError):
        messaging.send(push("token-1"), app=make_app(project_id="someone-elses-project"))
