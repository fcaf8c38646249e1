"""Bearer tokens (our extension): issue, use on REST and the WebSocket, rotate, revoke."""

import time

import jwt
import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from rest_framework.test import APIClient

from accounts import tokens
from accounts.models import Device
from signalserver.asgi import application
from signalserver.auth import SaltedTokenHash
from tests.factories import DeviceFactory, device_auth


def issue(device):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=device_auth(device))
    response = api.post("/v1/auth/token")
    assert response.status_code == 200, response.content
    return response.json()


def bearer(token):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api


def refresh(token):
    return APIClient().post("/v1/auth/refresh", {"refreshToken": token}, format="json")


@pytest.mark.django_db
def test_an_access_token_works_wherever_device_credentials_do():
    device = DeviceFactory()
    pair = issue(device)

    assert pair["expiresIn"] == 3600
    whoami = bearer(pair["accessToken"]).get("/v1/accounts/whoami")
    assert whoami.status_code == 200 and whoami.json()["uuid"] == str(device.account_id)
    assert bearer(pair["accessToken"]).get("/v2/keys").status_code == 200
    assert bearer(pair["accessToken"]).post("/v1/auth/token").status_code == 401  # no new login from a token


@pytest.mark.django_db(transaction=True)
async def test_an_access_token_opens_the_authenticated_websocket():
    device = await sync_to_async(DeviceFactory)()
    pair = await sync_to_async(issue)(device)

    ws = WebsocketCommunicator(application, "/v1/websocket/", headers=[(b"authorization", f"Bearer {pair['accessToken']}".encode())])
    connected, _ = await ws.connect()
    assert connected
    await ws.disconnect()
    refused = WebsocketCommunicator(application, "/v1/websocket/", headers=[(b"authorization", b"Bearer not-a-token")])
    assert not (await refused.connect())[0]


@pytest.mark.django_db
def test_refreshing_rotates_and_a_reused_refresh_token_revokes_the_whole_family():
    device = DeviceFactory()
    first = issue(device)
    second = refresh(first["refreshToken"]).json()
    assert bearer(second["accessToken"]).get("/v1/accounts/whoami").status_code == 200

    reuse = refresh(first["refreshToken"])

    assert reuse.status_code == 401
    assert refresh(second["refreshToken"]).status_code == 401
    assert bearer(second["accessToken"]).get("/v1/accounts/whoami").status_code == 401
    assert bearer(first["accessToken"]).get("/v1/accounts/whoami").status_code == 401
    other_login = issue(device)  # a fresh login with the password still works
    assert bearer(other_login["accessToken"]).get("/v1/accounts/whoami").status_code == 200


@pytest.mark.django_db
def test_an_expired_or_forged_access_token_is_refused():
    device = DeviceFactory()
    pair = issue(device)
    claims = jwt.decode(pair["accessToken"], options={"verify_signature": False})
    key = tokens._signing_key(settings.SECRET_KEY)
    expired = jwt.encode({**claims, "iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600}, key, algorithm="HS256")
    forged = jwt.encode({**claims, "dev": 2}, "not-the-key-0123456789-0123456789", algorithm="HS256")
    unsigned = jwt.encode(claims, None, algorithm="none")

    for token in (expired, forged, unsigned, "garbage", pair["accessToken"][:-2]):
        assert bearer(token).get("/v1/accounts/whoami").status_code == 401


@pytest.mark.django_db
def test_removing_the_device_or_changing_its_password_revokes_its_tokens():
    primary = DeviceFactory()
    linked = DeviceFactory(account=primary.account, device_id=2)
    linked_pair, primary_pair = issue(linked), issue(primary)

    assert APIClient(HTTP_AUTHORIZATION=device_auth(primary)).delete("/v1/devices/2").status_code == 204
    assert bearer(linked_pair["accessToken"]).get("/v1/accounts/whoami").status_code == 401
    assert refresh(linked_pair["refreshToken"]).status_code == 401

    changed = SaltedTokenHash.generate("a-brand-new-password-0123")
    Device.objects.filter(pk=primary.pk).update(auth_token_hash=changed.hash, auth_salt=changed.salt)
    assert bearer(primary_pair["accessToken"]).get("/v1/accounts/whoami").status_code == 401
    assert refresh(primary_pair["refreshToken"]).status_code == 401


@pytest.mark.django_db
def test_refresh_needs_a_known_token_and_token_needs_credentials(client):
    assert refresh("unknown").status_code == 401
    assert client.post("/v1/auth/refresh", {}, format="json").status_code == 422
    assert client.post("/v1/auth/token").status_code == 401
