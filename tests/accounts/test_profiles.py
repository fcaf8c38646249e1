"""Versioned encrypted profiles through the real routes, with ciphertexts of the sizes
Signal's clients write, the avatar upload form, and Signal's "optional access" rule."""

import base64
import hashlib
import hmac
import io
import os
import uuid
from datetime import timedelta

import json

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Profile
from accounts.profiles.services import purge_replaced_profiles
from keys.models import Identity, IdentityKey
from media import store
from tests.factories import DeviceFactory, device_auth, override_limit
from tests.messaging.helpers import parse_frame, request_frame, socket_for

pytestmark = pytest.mark.django_db

ACCESS_KEY = bytes(range(16))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def profile_body(version: str | None = None, **changes) -> dict:
    body = {
        "version": version or os.urandom(32).hex(),
        "commitment": b64(os.urandom(97)),
        "name": b64(os.urandom(81)),
        "about": b64(os.urandom(156)),
        "aboutEmoji": b64(os.urandom(60)),
        "paymentAddress": b64(os.urandom(582)),
        "phoneNumberSharing": b64(os.urandom(29)),
        "avatar": False,
        "sameAvatar": False,
        "badgeIds": [],
    }
    return {**body, **changes}


@pytest.fixture
def alice():
    device = DeviceFactory(account__unidentified_access_key=ACCESS_KEY)
    IdentityKey.objects.create(account=device.account, identity=Identity.ACI, public_key=b"\x05" + os.urandom(32))
    IdentityKey.objects.create(account=device.account, identity=Identity.PNI, public_key=b"\x05" + os.urandom(32))
    return device


@pytest.fixture
def bob():
    return DeviceFactory()


def put(client_for, device, body):
    return client_for(device).put("/v1/profile", body, format="json")


def test_a_version_set_is_read_back_by_a_contact_with_credentials(client_for, alice, bob):
    body = profile_body()
    assert put(client_for, alice, body).status_code == 200

    response = client_for(bob).get(f"/v1/profile/{alice.account.aci}/{body['version']}")
    assert response.status_code == 200
    profile = response.json()
    for field in ("name", "about", "aboutEmoji", "paymentAddress", "phoneNumberSharing"):
        assert profile[field] == body[field]
    assert profile["avatar"] is None
    assert profile["uuid"] == str(alice.account.aci)
    aci_key = IdentityKey.objects.get(account=alice.account, identity=Identity.ACI).public_key
    assert profile["identityKey"] == b64(bytes(aci_key))
    assert profile["unidentifiedAccess"] == b64(hmac.new(ACCESS_KEY, bytes(32), hashlib.sha256).digest())
    assert profile["unrestrictedUnidentifiedAccess"] is False
    assert profile["badges"] == []
    assert set(profile["capabilities"]) >= {"storage", "spqr"}


def test_an_unknown_version_is_not_a_404_its_fields_are_null(client_for, alice, bob):
    put(client_for, alice, profile_body())
    profile = client_for(bob).get(f"/v1/profile/{alice.account.aci}/{'ab' * 32}").json()
    assert [profile[field] for field in ("name", "about", "aboutEmoji", "avatar", "paymentAddress", "phoneNumberSharing")] == [None] * 6
    assert profile["identityKey"] is not None


def test_the_payment_address_is_given_for_the_current_version_only(client_for, alice, bob):
    first, second = profile_body(), profile_body()
    put(client_for, alice, first)
    put(client_for, alice, second)
    old = client_for(bob).get(f"/v1/profile/{alice.account.aci}/{first['version']}").json()
    assert old["name"] == first["name"] and old["paymentAddress"] is None
    assert client_for(bob).get(f"/v1/profile/{alice.account.aci}/{second['version']}").json()["paymentAddress"] == second["paymentAddress"]


@pytest.mark.parametrize(
    "change",
    [
        {"version": "ab" * 31},
        {"version": "zz" * 32},
        {"commitment": b64(os.urandom(96))},
        {"commitment": None},
        {"name": b64(os.urandom(80))},
        {"name": b64(b"")},
        {"about": b64(os.urandom(157))},
        {"aboutEmoji": b64(os.urandom(61))},
        {"paymentAddress": b64(os.urandom(100))},
        {"phoneNumberSharing": b64(os.urandom(30))},
        {"name": "not base64!"},
    ],
)
def test_a_field_of_a_length_no_client_writes_is_422_and_nothing_is_stored(client_for, alice, change):
    assert put(client_for, alice, profile_body(**change)).status_code == 422
    assert not Profile.objects.exists()


def test_empty_or_absent_optional_fields_are_accepted(client_for, alice, bob):
    body = profile_body(about=b64(b""), aboutEmoji=None, paymentAddress=None)
    del body["phoneNumberSharing"], body["badgeIds"]
    assert put(client_for, alice, body).status_code == 200
    profile = client_for(bob).get(f"/v1/profile/{alice.account.aci}/{body['version']}").json()
    assert (profile["about"], profile["aboutEmoji"], profile["phoneNumberSharing"]) == ("", None, None)


def test_without_credentials_setting_a_profile_is_401(client):
    assert client.put("/v1/profile", profile_body(), content_type="application/json").status_code == 401


def test_a_new_avatar_gets_an_upload_form_a_kept_one_its_path_and_a_removed_one_is_deleted(client_for, alice, bob, local_media, django_capture_on_commit_callbacks):
    first = profile_body(avatar=True)
    response = put(client_for, alice, first)
    form = response.json()
    assert set(form) == {"key", "credential", "acl", "algorithm", "date", "policy", "signature"}
    assert form["key"].startswith("profiles/") and form["acl"] == "private"
    store.storage().save(form["key"], io.BytesIO(b"encrypted avatar"))

    kept = profile_body(avatar=True, sameAvatar=True)
    response = put(client_for, alice, kept)
    assert (response.status_code, response.content) == (200, b"")
    assert client_for(bob).get(f"/v1/profile/{alice.account.aci}/{kept['version']}").json()["avatar"] == form["key"]

    with django_capture_on_commit_callbacks(execute=True):  # the object goes once the change is committed
        response = put(client_for, alice, profile_body(avatar=False))
    assert (response.status_code, response.content) == (200, b"")
    assert not store.storage().exists(form["key"])


def test_only_the_current_and_the_replaced_version_are_kept_and_the_replaced_one_only_for_the_grace_period(client_for, alice, settings):
    versions = [profile_body() for _ in range(3)]
    for body in versions:
        put(client_for, alice, body)
    assert sorted(Profile.objects.values_list("version", flat=True)) == sorted(body["version"] for body in versions[1:])

    Profile.objects.filter(replaced__isnull=False).update(replaced=timezone.now().date() - timedelta(days=settings.PROFILE_GRACE_DAYS + 1))
    assert purge_replaced_profiles() == 1
    assert list(Profile.objects.values_list("version", flat=True)) == [versions[2]["version"]]


# --- optional access -------------------------------------------------------------------------


def test_an_anonymous_caller_with_the_access_key_reads_the_profile(client, alice):
    body = profile_body()
    headers = {"HTTP_UNIDENTIFIED_ACCESS_KEY": b64(ACCESS_KEY)}
    assert client.get(f"/v1/profile/{alice.account.aci}", **headers).status_code == 200
    assert client.get(f"/v1/profile/{alice.account.aci}/{body['version']}", **headers).status_code == 200


@pytest.mark.parametrize("path", ["/v1/profile/{aci}", "/v1/profile/{aci}/" + "cd" * 32])
def test_anonymous_callers_get_401_for_a_wrong_key_no_key_or_an_account_that_does_not_exist(client, alice, path):
    wrong = {"HTTP_UNIDENTIFIED_ACCESS_KEY": b64(bytes(16))}
    right = {"HTTP_UNIDENTIFIED_ACCESS_KEY": b64(ACCESS_KEY)}
    assert client.get(path.format(aci=alice.account.aci), **wrong).status_code == 401
    assert client.get(path.format(aci=alice.account.aci)).status_code == 401
    assert client.get(path.format(aci=uuid.uuid4()), **right).status_code == 401  # never 404
    assert client.get(path.format(aci=alice.account.aci), HTTP_UNIDENTIFIED_ACCESS_KEY="short").status_code == 401


def test_an_authenticated_caller_gets_404_for_an_account_that_does_not_exist(client_for, bob):
    assert client_for(bob).get(f"/v1/profile/{uuid.uuid4()}").status_code == 404


def test_a_pni_target_answers_only_its_identity_key_and_never_to_an_access_key(client, client_for, alice, bob):
    target = f"PNI:{alice.account.pni}"
    profile = client_for(bob).get(f"/v1/profile/{target}").json()
    pni_key = IdentityKey.objects.get(account=alice.account, identity=Identity.PNI).public_key
    assert profile == {
        "identityKey": b64(bytes(pni_key)),
        "unidentifiedAccess": None,
        "unrestrictedUnidentifiedAccess": False,
        "capabilities": profile["capabilities"],
        "badges": [],
        "uuid": target,
    }
    assert client.get(f"/v1/profile/{target}", HTTP_UNIDENTIFIED_ACCESS_KEY=b64(ACCESS_KEY)).status_code == 401
    assert client_for(bob).get(f"/v1/profile/{target}/{'ab' * 32}").status_code == 422  # versions need an ACI


def test_an_account_with_unrestricted_access_is_read_with_any_key(client, alice):
    alice.account.unrestricted_unidentified_access = True
    alice.account.save()
    assert client.get(f"/v1/profile/{alice.account.aci}", HTTP_UNIDENTIFIED_ACCESS_KEY=b64(bytes(16))).status_code == 200


def test_two_kinds_of_authorization_are_400_and_a_group_send_token_401(client, client_for, alice, bob):
    path = f"/v1/profile/{alice.account.aci}"
    assert client_for(bob).get(path, HTTP_UNIDENTIFIED_ACCESS_KEY=b64(ACCESS_KEY)).status_code == 400
    assert client.get(path, HTTP_GROUP_SEND_TOKEN="AAAA").status_code == 401


def test_authenticated_reads_are_limited_per_account(client_for, alice, bob):
    override_limit("profile", 2, 3600)
    path = f"/v1/profile/{alice.account.aci}"
    assert [client_for(bob).get(path).status_code for _ in range(3)] == [200, 200, 429]


def test_zkgroup_profile_credentials_are_not_supported(client_for, alice, bob):
    response = client_for(bob).get(f"/v1/profile/{alice.account.aci}/{'ab' * 32}/{'00' * 100}?credentialType=expiringProfileKey")
    assert response.status_code == 404 and response.json()["code"] == 404


# --- identity check --------------------------------------------------------------------------


def test_the_identity_check_lists_only_the_keys_that_changed(client, alice, bob):
    aci_key = bytes(IdentityKey.objects.get(account=alice.account, identity=Identity.ACI).public_key)
    pni_key = bytes(IdentityKey.objects.get(account=alice.account, identity=Identity.PNI).public_key)
    fingerprint = lambda key: b64(hashlib.sha256(key).digest()[:4])  # noqa: E731
    body = {
        "elements": [
            {"uuid": str(alice.account.aci), "fingerprint": fingerprint(aci_key)},  # unchanged
            {"uuid": f"PNI:{alice.account.pni}", "fingerprint": fingerprint(b"an old key")},  # changed
            {"uuid": str(uuid.uuid4()), "fingerprint": fingerprint(b"x")},  # no such account
        ]
    }
    response = client.post("/v1/profile/identity_check/batch", body, content_type="application/json")
    assert response.status_code == 200
    assert response.json() == {"elements": [{"uuid": f"PNI:{alice.account.pni}", "identityKey": b64(pni_key)}]}


def test_the_identity_check_takes_at_most_1000_elements_and_is_limited_per_address(client, alice):
    element = {"uuid": str(alice.account.aci), "fingerprint": b64(bytes(4))}
    too_many = client.post("/v1/profile/identity_check/batch", {"elements": [element] * 1001}, content_type="application/json")
    assert too_many.status_code == 422
    override_limit("batchIdentityCheck", 2, 3600)
    statuses = [client.post("/v1/profile/identity_check/batch", {"elements": [element]}, content_type="application/json").status_code for _ in range(3)]
    assert statuses[-1] == 429


# The socket reads the database on threads of its own: the rows must be committed (and flushed after).
@pytest.mark.django_db(transaction=True)
async def test_a_versioned_profile_read_over_an_anonymous_socket_with_the_access_key_is_the_http_answer(client):
    device = await sync_to_async(DeviceFactory)(account__unidentified_access_key=ACCESS_KEY)
    body = profile_body()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=device_auth(device))
    assert (await sync_to_async(api.put)("/v1/profile", body, format="json")).status_code == 200
    path = f"/v1/profile/{device.account.aci}/{body['version']}"
    over_http = await sync_to_async(client.get)(path, HTTP_UNIDENTIFIED_ACCESS_KEY=b64(ACCESS_KEY))

    ws = socket_for(None, headers=[(b"host", b"testserver")])
    assert (await ws.connect())[0]
    await ws.send_to(bytes_data=request_frame("GET", path, request_id=3, headers=[f"Unidentified-Access-Key:{b64(ACCESS_KEY)}"]))
    response = parse_frame(await ws.receive_from(timeout=3)).response
    await ws.send_to(bytes_data=request_frame("GET", path, request_id=4, headers=["Unidentified-Access-Key:" + b64(bytes(16))]))
    refused = parse_frame(await ws.receive_from(timeout=3)).response
    await ws.disconnect()
    assert (response.status, json.loads(response.body)) == (200, over_http.json())
    assert json.loads(response.body)["name"] == body["name"]
    assert refused.status == 401
