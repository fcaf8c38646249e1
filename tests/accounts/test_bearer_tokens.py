"""Bearer tokens (our extension): issue, use on REST and the WebSocket, rotate, revoke."""

import json
import time
import uuid

import jwt
import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.tokens import services as tokens
from accounts.models import Device, RefreshToken, TokenFamily
from signalserver.auth import authenticate_authorization
from tests.accounts.test_registration_existing import LOCK, NUMBER, existing_primary, register_number
from tests.factories import DeviceFactory, device_auth
from tests.messaging.helpers import parse_frame, request_frame, socket_for


def issue(device):
    response = APIClient(HTTP_AUTHORIZATION=device_auth(device)).post("/v1/auth/token")
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    return response.json()


def bearer(token):
    return APIClient(HTTP_AUTHORIZATION=f"Bearer {token}")


def whoami(token) -> int:
    return bearer(token).get("/v1/accounts/whoami").status_code


def refresh(token):
    return APIClient().post("/v1/auth/refresh", {"refreshToken": token}, format="json")


def bearer_socket(token, *headers):
    return socket_for(headers=[(b"authorization", f"Bearer {token}".encode()), *headers])


# --- Issue and use --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_access_token_works_wherever_device_credentials_do():
    device = DeviceFactory()
    pair = issue(device)

    assert pair["expiresIn"] == 3600
    response = bearer(pair["accessToken"]).get("/v1/accounts/whoami")
    assert response.status_code == 200 and response.json()["uuid"] == str(device.account_id)
    assert bearer(pair["accessToken"]).get("/v2/keys").status_code == 200
    assert bearer(pair["accessToken"]).get("/v1/devices").json()["devices"][0]["id"] == 1


@pytest.mark.django_db
def test_an_access_token_names_the_device_row_and_lasts_an_hour():
    device = DeviceFactory(account__number=NUMBER)
    pair = issue(device)

    claims = jwt.decode(pair["accessToken"], options={"verify_signature": False})
    assert (claims["sub"], claims["dev"], claims["dpk"]) == (str(device.account_id), 1, device.pk)
    assert claims["exp"] - claims["iat"] == 3600
    assert NUMBER not in json.dumps(claims)  # no phone number inside a token anyone can read


@pytest.mark.django_db
def test_a_bearer_token_cannot_mint_a_new_login():
    pair = issue(DeviceFactory())
    response = bearer(pair["accessToken"]).post("/v1/auth/token")
    assert response.status_code == 401
    assert response.json() == {"code": 401, "message": "device credentials required"}
    assert TokenFamily.objects.count() == 1


@pytest.mark.django_db
def test_authenticating_a_bearer_token_costs_one_query(django_assert_num_queries):
    device = DeviceFactory(last_seen=timezone.now().date())  # no last-seen refresh due
    pair = issue(device)

    with django_assert_num_queries(1):
        principal = authenticate_authorization(f"Bearer {pair['accessToken']}")

    assert principal.device.pk == device.pk and principal.token_family is not None


@pytest.mark.django_db
def test_refresh_tokens_are_stored_only_as_hashes():
    pair = issue(DeviceFactory())
    stored = [bytes(row.token_hash) for row in RefreshToken.objects.all()]
    assert len(stored) == 1 and pair["refreshToken"].encode() not in stored[0]
    assert stored[0] == tokens._hash(pair["refreshToken"])


@pytest.mark.django_db(transaction=True)
async def test_an_access_token_opens_the_authenticated_websocket():
    device = await sync_to_async(DeviceFactory)()
    pair = await sync_to_async(issue)(device)

    ws = bearer_socket(pair["accessToken"], (b"x-signal-disable-messages", b"true"))
    assert (await ws.connect())[0]
    await ws.send_to(bytes_data=request_frame("GET", "/v1/accounts/whoami", request_id=3))
    response = parse_frame(await ws.receive_from(timeout=3)).response
    assert response.status == 200 and json.loads(response.body)["uuid"] == str(device.account_id)

    # Nor can a socket opened with a token mint a login, whatever header a frame carries.
    frame_headers = [f"Authorization:{device_auth(device)}"]
    await ws.send_to(bytes_data=request_frame("POST", "/v1/auth/token", request_id=4, headers=frame_headers))
    assert parse_frame(await ws.receive_from(timeout=3)).response.status == 401
    await ws.disconnect()

    refused = bearer_socket("not-a-token")
    assert not (await refused.connect())[0]


# --- Refused tokens -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_expired_access_token_is_refused():
    device = DeviceFactory()
    issue(device)
    family = TokenFamily.objects.get().pk

    expired = tokens.encode_access_token(device, family, now=time.time() - 3601)
    nearly = tokens.encode_access_token(device, family, now=time.time() - 3500)

    assert whoami(expired) == 401
    assert whoami(nearly) == 200


@pytest.mark.django_db
def test_malformed_forged_and_unsigned_tokens_are_refused():
    device = DeviceFactory()
    pair = issue(device)
    claims = jwt.decode(pair["accessToken"], options={"verify_signature": False})
    key = tokens.signing_key()
    forged = [
        jwt.encode({**claims, "dev": 2}, "not-the-key-0123456789-0123456789", algorithm="HS256"),
        jwt.encode(claims, None, algorithm="none"),
        jwt.encode(claims, key * 2, algorithm="HS512"),  # an algorithm not ours
        jwt.encode({**claims, "iss": "someone-else"}, key, algorithm="HS256"),
        jwt.encode({k: v for k, v in claims.items() if k != "fam"}, key, algorithm="HS256"),
        jwt.encode({**claims, "fam": str(uuid.uuid4())}, key, algorithm="HS256"),  # a family never issued
        jwt.encode({**claims, "dpk": "1; drop"}, key, algorithm="HS256"),
        jwt.encode({**claims, "sub": "not-a-uuid"}, key, algorithm="HS256"),
        jwt.encode({**claims, "cf": "0" * 16}, key, algorithm="HS256"),
    ]
    malformed = ["garbage", pair["accessToken"][:-2], "a.b.c", "x" * 5000, ""]

    for token in forged + malformed:
        assert whoami(token) == 401, token
    assert bearer("").get("/v1/accounts/whoami").status_code == 401
    assert APIClient(HTTP_AUTHORIZATION="Bearer").get("/v1/accounts/whoami").status_code == 401
    assert whoami(pair["accessToken"]) == 200


@pytest.mark.django_db
def test_refresh_needs_a_known_unexpired_token_and_token_needs_credentials(client):
    device = DeviceFactory()
    expired = tokens.issue_tokens(device=device, now=time.time() - 31 * 86400)

    assert refresh(expired.refresh_token).status_code == 401
    assert refresh("unknown").status_code == 401
    assert client.post("/v1/auth/refresh", {}, format="json").status_code == 422
    assert client.post("/v1/auth/token").status_code == 401
    wrong_password = APIClient(HTTP_AUTHORIZATION=device_auth(device, "a-wrong-password-0123"))
    assert wrong_password.post("/v1/auth/token").status_code == 401


# --- Rotation and reuse ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_refreshing_rotates_the_refresh_token():
    first = issue(DeviceFactory())

    response = refresh(first["refreshToken"])

    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    second = response.json()
    assert second["refreshToken"] != first["refreshToken"] and second["expiresIn"] == 3600
    assert whoami(second["accessToken"]) == 200
    assert whoami(first["accessToken"]) == 200  # access tokens of a healthy family live out their hour
    third = refresh(second["refreshToken"]).json()
    assert whoami(third["accessToken"]) == 200


@pytest.mark.django_db
def test_a_reused_refresh_token_revokes_the_whole_family_and_nothing_else():
    device = DeviceFactory()
    first = issue(device)
    other_login = issue(device)
    second = refresh(first["refreshToken"]).json()
    third = refresh(second["refreshToken"]).json()

    assert refresh(first["refreshToken"]).status_code == 401  # the reuse

    assert refresh(third["refreshToken"]).status_code == 401  # the newest refresh token too
    for access in (first, second, third):
        assert whoami(access["accessToken"]) == 401
    assert TokenFamily.objects.filter(revoked=True).count() == 1
    # Other logins of the device, and its credentials, are unaffected.
    assert whoami(other_login["accessToken"]) == 200
    assert refresh(other_login["refreshToken"]).status_code == 200
    assert whoami(issue(device)["accessToken"]) == 200


@pytest.mark.django_db(transaction=True)
async def test_a_reused_refresh_token_closes_the_sockets_opened_with_the_family():
    device = await sync_to_async(DeviceFactory)()
    first = await sync_to_async(issue)(device)
    await sync_to_async(refresh)(first["refreshToken"])
    ws = bearer_socket(first["accessToken"], (b"x-signal-disable-messages", b"true"))
    assert (await ws.connect())[0]

    assert (await sync_to_async(refresh)(first["refreshToken"])).status_code == 401

    assert (await ws.receive_output(timeout=3)) == {"type": "websocket.close", "code": 4401}
    await ws.wait()
    assert not (await bearer_socket(first["accessToken"]).connect())[0]


@pytest.mark.django_db
def test_a_device_keeps_at_most_ten_logins_and_expired_ones_are_cleared():
    device = DeviceFactory()
    stale = tokens.issue_tokens(device=device, now=time.time() - 31 * 86400)
    logins = [issue(device) for _ in range(tokens.MAX_FAMILIES_PER_DEVICE + 1)]

    assert TokenFamily.objects.filter(device=device).count() == tokens.MAX_FAMILIES_PER_DEVICE
    assert not RefreshToken.objects.filter(token_hash=tokens._hash(stale.refresh_token)).exists()
    assert whoami(logins[0]["accessToken"]) == 401 and refresh(logins[0]["refreshToken"]).status_code == 401
    assert all(whoami(login["accessToken"]) == 200 for login in logins[1:])


# --- Device removal and credential changes --------------------------------------------------------


@pytest.mark.django_db
def test_removing_a_device_revokes_its_tokens():
    primary = DeviceFactory()
    linked = DeviceFactory(account=primary.account, device_id=2)
    linked_pair, primary_pair = issue(linked), issue(primary)

    assert APIClient(HTTP_AUTHORIZATION=device_auth(primary)).delete("/v1/devices/2").status_code == 204

    assert whoami(linked_pair["accessToken"]) == 401
    assert refresh(linked_pair["refreshToken"]).status_code == 401
    assert whoami(primary_pair["accessToken"]) == 200
    # A device linked again gets the same device id, not the old tokens.
    DeviceFactory(account=primary.account, device_id=2)
    assert whoami(linked_pair["accessToken"]) == 401


@pytest.mark.django_db
def test_reregistering_the_number_revokes_the_old_devices_tokens():
    primary = existing_primary()
    pair = issue(primary)

    assert register_number().status_code == 200

    assert Device.objects.get().device_id == 1  # the new primary has the old one's ACI and device id
    assert whoami(pair["accessToken"]) == 401
    assert refresh(pair["refreshToken"]).status_code == 401


@pytest.mark.django_db
def test_locked_credentials_revoke_the_devices_tokens():
    # A registration that proves the number but not the registration lock locks every device's
    # password in place: same rows, new credential hash.
    primary = existing_primary(lock=LOCK)
    pair = issue(primary)

    assert register_number(attributes={"registrationLock": "00" * 32}).status_code == 423

    assert Device.objects.filter(pk=primary.pk).exists()
    assert whoami(pair["accessToken"]) == 401
    assert refresh(pair["refreshToken"]).status_code == 401


@pytest.mark.django_db
def test_tokens_stop_when_the_device_password_changes():
    device = DeviceFactory()
    pair = issue(device)
    device.auth_token_hash = "2." + "ab" * 32  # as any future password change would leave the row
    device.save(update_fields=["auth_token_hash"])

    assert whoami(pair["accessToken"]) == 401
    assert refresh(pair["refreshToken"]).status_code == 401


@pytest.mark.django_db
def test_token_endpoints_are_documented_as_extensions(client):
    paths = client.get("/v1/openapi.json").json()["paths"]
    for path in ("/v1/auth/token", "/v1/auth/refresh"):
        assert "signalserver extension" in paths[path]["post"]["description"]
    assert set(paths["/v1/auth/refresh"]["post"]["responses"]) >= {"200", "401", "422"}
