"""Linking devices through the provisioning socket, and device management."""

import base64
import hashlib
import hmac
import time

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from rest_framework.test import APIClient

from accounts.devices import services as device_services
from accounts.models import Device
from keys.models import Identity, IdentityKey, LastResortKey, SignedPreKey
from messaging.models import QueuedMessage
from signalserver.asgi import application
from signalserver.proto.provisioning_pb2 import ProvisioningAddress
from signalserver.wire import b64encode, b64encode_url
from tests.crypto import IdentityKeyPair, signed_ec_prekey, signed_kem_prekey
from tests.factories import DeviceFactory, basic_auth, device_auth
from tests.messaging.helpers import message_list, next_message, next_request, parse_frame, response_frame, socket_for

NEW_PASSWORD = "linked-device-password-0123456789"


class Account:
    """A primary device with real identity keys, as registration leaves it."""

    def __init__(self, capabilities=("spqr",)):
        self.primary = DeviceFactory(capabilities=list(capabilities))
        self.account = self.primary.account
        self.aci, self.pni = IdentityKeyPair(), IdentityKeyPair()
        IdentityKey.objects.create(account=self.account, identity=Identity.ACI, public_key=self.aci.public_key)
        IdentityKey.objects.create(account=self.account, identity=Identity.PNI, public_key=self.pni.public_key)

    def client(self, device=None):
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=device_auth(device or self.primary))
        return api

    def link_body(self, code, *, capabilities=None, signer=None, **fields):
        signer = signer or self.aci
        return {
            "verificationCode": code,
            "accountAttributes": {
                "fetchesMessages": False,
                "registrationId": 777,
                "pniRegistrationId": 778,
                "name": b64encode(b"encrypted name"),
                "capabilities": capabilities if capabilities is not None else {"spqr": True},
            },
            "aciSignedPreKey": signed_ec_prekey(signer, key_id=5),
            "pniSignedPreKey": signed_ec_prekey(self.pni, key_id=6),
            "aciPqLastResortPreKey": signed_kem_prekey(signer, key_id=7),
            "pniPqLastResortPreKey": signed_kem_prekey(self.pni, key_id=8),
            "gcmToken": {"gcmRegistrationId": "fcm-of-the-new-device"},
            **fields,
        }

    def code(self):
        response = self.client().get("/v1/devices/provisioning/code")
        assert response.status_code == 200, response.content
        return response.json()["verificationCode"]

    def link(self, code=None, **kwargs):
        body = self.link_body(code or self.code(), **kwargs)
        return APIClient().put(
            "/v1/devices/link", body, format="json", HTTP_AUTHORIZATION=basic_auth("ignored", NEW_PASSWORD)
        )


@pytest.fixture
def alice(db):
    return Account()


# --- Provisioning socket ------------------------------------------------------------------------


async def provisioning_socket():
    ws = WebsocketCommunicator(application, "/v1/websocket/provisioning/")
    assert (await ws.connect())[0]
    request = await next_request(ws)
    assert (request.verb, request.path) == ("PUT", "/v1/address")
    assert any(h.startswith("X-Signal-Timestamp:") for h in request.headers)
    address = ProvisioningAddress.FromString(request.body).address
    await ws.send_to(bytes_data=response_frame(request.id))
    return ws, address


@pytest.mark.django_db(transaction=True)
async def test_a_provisioning_envelope_reaches_the_socket_holding_the_address_which_then_closes():
    alice = await sync_to_async(Account)()
    ws, address = await provisioning_socket()
    assert len(address) == 24 and address.endswith("==")
    envelope = b"\x0a\x21" + b"\x05" * 33 + b"opaque provisioning envelope"

    response = await sync_to_async(alice.client().put)(
        f"/v1/provisioning/{address}", {"body": base64.encodebytes(envelope).decode()}, format="json"
    )

    assert response.status_code == 204
    request = await next_request(ws)
    assert (request.verb, request.path, request.body) == ("PUT", "/v1/message", envelope)
    await ws.send_to(bytes_data=response_frame(request.id))
    assert (await ws.receive_output(timeout=2)) == {"type": "websocket.close", "code": 1000}
    again = await sync_to_async(alice.client().put)(f"/v1/provisioning/{address}", {"body": "AAAA"}, format="json")
    assert again.status_code == 404  # an address carries one envelope


@pytest.mark.django_db
def test_an_address_nobody_listens_on_is_404_and_bodies_are_checked(alice):
    client = alice.client()
    assert client.put("/v1/provisioning/bm9ib2R5LWxpc3RlbnMtaGVyZQ==", {"body": "AAAA"}, format="json").status_code == 404
    assert client.put("/v1/provisioning/x", {"body": ""}, format="json").status_code == 422
    assert client.put("/v1/provisioning/x", {"body": "***"}, format="json").status_code == 422
    assert client.put("/v1/provisioning/x", {"body": "A" * (256 * 1024 + 4)}, format="json").status_code == 400
    assert APIClient().put("/v1/provisioning/x", {"body": "AAAA"}, format="json").status_code == 401


@pytest.mark.django_db(transaction=True)
async def test_the_provisioning_socket_answers_keepalives():
    ws, _ = await provisioning_socket()
    from tests.messaging.helpers import request_frame

    await ws.send_to(bytes_data=request_frame("GET", "/v1/keepalive/provisioning", request_id=3))
    frame = parse_frame(await ws.receive_from(timeout=2))
    assert (frame.response.id, frame.response.status) == (3, 200)
    await ws.disconnect()


# --- Linking ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_device_linked_through_provisioning_gets_the_accounts_messages_and_removal_closes_it():
    alice = await sync_to_async(Account)()
    bob = await sync_to_async(DeviceFactory)()
    bob_client = APIClient()
    bob_client.credentials(HTTP_AUTHORIZATION=device_auth(bob))

    # The new device opens the provisioning socket; the primary sends it the link code.
    ws, address = await provisioning_socket()
    code = await sync_to_async(alice.code)()
    sent = await sync_to_async(alice.client().put)(
        f"/v1/provisioning/{address}", {"body": b64encode(code.encode())}, format="json"
    )
    assert sent.status_code == 204
    delivered = await next_request(ws)
    await ws.send_to(bytes_data=response_frame(delivered.id))
    linked = await sync_to_async(alice.link)(delivered.body.decode())
    assert linked.status_code == 200
    assert linked.json() == {"uuid": str(alice.account.aci), "pni": str(alice.account.pni), "deviceId": 2}
    new_device = await sync_to_async(Device.objects.get)(account=alice.account, device_id=2)

    # The sender learns about the new device from a 409, then reaches it.
    stale_view = message_list([(1, alice.primary.registration_id)])
    first = await sync_to_async(bob_client.put)(f"/v1/messages/{alice.account.aci}", stale_view, format="json")
    assert first.status_code == 409
    assert first.json() == {"missingDevices": [2], "extraDevices": []}
    linked_ws = socket_for(new_device, password=NEW_PASSWORD)
    assert (await linked_ws.connect())[0]
    await next_request(linked_ws)  # queue empty
    both = message_list([(1, alice.primary.registration_id), (2, 777)], content=b"hello new device")
    assert (await sync_to_async(bob_client.put)(f"/v1/messages/{alice.account.aci}", both, format="json")).status_code == 200
    _, envelope = await next_message(linked_ws)
    assert envelope.content == b"hello new device"

    # Removing it closes its socket with 4401 and empties its queue.
    await sync_to_async(bob_client.put)(f"/v1/messages/{alice.account.aci}", both, format="json")
    removed = await sync_to_async(alice.client().delete)("/v1/devices/2")
    assert removed.status_code == 204
    close = None
    for _ in range(5):
        output = await linked_ws.receive_output(timeout=2)
        if output["type"] == "websocket.close":
            close = output
            break
    assert close == {"type": "websocket.close", "code": 4401}
    assert not await sync_to_async(QueuedMessage.objects.filter(device_id=new_device.pk).exists)()
    assert not await sync_to_async(SignedPreKey.objects.filter(device_id=new_device.pk).exists)()


@pytest.mark.django_db
def test_linking_stores_the_device_its_password_and_its_keys(alice):
    response = alice.link()

    assert response.status_code == 200
    device = Device.objects.get(account=alice.account, device_id=2)
    assert device.registration_id == 777 and device.pni_registration_id == 778
    assert device.capabilities == ["spqr"] and device.gcm_id == "fcm-of-the-new-device"
    assert SignedPreKey.objects.filter(device=device).count() == 2
    assert LastResortKey.objects.filter(device=device).count() == 2
    whoami = APIClient().get("/v1/accounts/whoami", HTTP_AUTHORIZATION=device_auth(device, NEW_PASSWORD))
    assert whoami.status_code == 200


@pytest.mark.django_db
def test_a_link_token_works_once(alice):
    code = alice.code()
    assert alice.link(code).status_code == 200
    assert alice.link(code).status_code == 403
    assert Device.objects.filter(account=alice.account).count() == 2


@pytest.mark.django_db
def test_expired_and_forged_tokens_are_403(alice):
    claims = f"{alice.account.aci}.{time.time_ns() // 1_000_000 - 11 * 60 * 1000}"
    mac = hmac.new(device_services._token_key(), claims.encode(), hashlib.sha256).digest()
    expired = f"{claims}:{b64encode_url(mac, padded=False)}"
    code = alice.code()
    forged = code.replace(str(alice.account.aci), str(DeviceFactory().account_id))

    assert alice.link(expired).status_code == 403
    assert alice.link(forged).status_code == 403
    assert alice.link("garbage").status_code == 403


@pytest.mark.django_db
def test_only_the_primary_gets_link_tokens(alice):
    linked = DeviceFactory(account=alice.account, device_id=2)

    assert alice.client(linked).get("/v1/devices/provisioning/code").status_code == 401


@pytest.mark.django_db
def test_the_device_limit_is_411_with_its_body(alice):
    for device_id in range(2, 7):
        DeviceFactory(account=alice.account, device_id=device_id)

    response = alice.client().get("/v1/devices/provisioning/code")

    assert response.status_code == 411
    assert response.json() == {"current": 6, "max": 6}


@pytest.mark.django_db
def test_linking_at_the_limit_is_411(alice):
    code = alice.code()
    for device_id in range(2, 7):
        DeviceFactory(account=alice.account, device_id=device_id)

    response = alice.link(code)

    assert response.status_code == 411
    assert response.json() == {"current": 6, "max": 6}


@pytest.mark.django_db
def test_a_prekey_not_signed_by_the_accounts_identity_key_is_422_and_nothing_is_stored(alice):
    response = alice.link(signer=IdentityKeyPair())

    assert response.status_code == 422
    assert Device.objects.filter(account=alice.account).count() == 1


@pytest.mark.django_db
def test_missing_or_downgraded_capabilities_are_409(db):
    alice = Account(capabilities=("spqr", "usernameChangeSyncMessage"))

    assert alice.link(capabilities={"usernameChangeSyncMessage": True}).status_code == 409
    assert alice.link(capabilities={"spqr": True}).status_code == 409
    assert alice.link(capabilities={"spqr": True, "usernameChangeSyncMessage": True}).status_code == 200


@pytest.mark.django_db
def test_link_needs_a_basic_header_and_a_proper_password(alice):
    body = alice.link_body(alice.code())
    assert APIClient().put("/v1/devices/link", body, format="json").status_code == 401
    short = APIClient().put("/v1/devices/link", body, format="json", HTTP_AUTHORIZATION=basic_auth("x", "short"))
    assert short.status_code == 422


@pytest.mark.django_db
def test_the_lowest_free_device_id_is_used(alice):
    DeviceFactory(account=alice.account, device_id=2)
    DeviceFactory(account=alice.account, device_id=3)
    alice.client().delete("/v1/devices/2")

    assert alice.link().json()["deviceId"] == 2


# --- Device management --------------------------------------------------------------------------


@pytest.mark.django_db
def test_devices_are_listed_with_day_granular_times(alice):
    DeviceFactory(account=alice.account, device_id=2, name=b"secret name")

    response = alice.client().get("/v1/devices")

    assert response.status_code == 200
    listed = response.json()["devices"]
    assert [d["id"] for d in listed] == [1, 2]
    assert listed[1]["name"] == b64encode(b"secret name")
    assert listed[1]["created"] % 86_400_000 == 0
    assert listed[0]["registrationId"] == alice.primary.registration_id


@pytest.mark.django_db
def test_who_may_remove_which_device(alice):
    second = DeviceFactory(account=alice.account, device_id=2)
    third = DeviceFactory(account=alice.account, device_id=3)

    assert alice.client(second).delete("/v1/devices/3").status_code == 401
    assert alice.client(second).delete("/v1/devices/1").status_code == 403
    assert alice.client().delete("/v1/devices/1").status_code == 403
    assert alice.client().delete("/v1/devices/9").status_code == 204  # unknown: a no-op
    assert alice.client(third).delete("/v1/devices/3").status_code == 204
    assert alice.client().delete("/v1/devices/2").status_code == 204
    assert list(Device.objects.filter(account=alice.account).values_list("device_id", flat=True)) == [1]


# --- Waiting for the linked device --------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_the_primary_learns_which_device_used_its_token_as_soon_as_it_links():
    import asyncio

    from django.test import AsyncClient

    alice = await sync_to_async(Account)()
    token = (await sync_to_async(alice.client().get)("/v1/devices/provisioning/code")).json()
    path = f"/v1/devices/wait_for_linked_device/{token['tokenIdentifier']}"
    headers = {"Authorization": device_auth(alice.primary)}
    wait = asyncio.ensure_future(AsyncClient().get(path, {"timeout": "10"}, headers=headers))
    await asyncio.sleep(0.3)
    assert not wait.done()

    started = time.monotonic()
    assert (await sync_to_async(alice.link)(token["verificationCode"])).status_code == 200
    response = await asyncio.wait_for(wait, timeout=5)

    assert time.monotonic() - started < 2
    assert response.status_code == 200
    assert response.json()["id"] == 2 and response.json()["registrationId"] == 777
    later = await AsyncClient().get(path, {"timeout": "1"}, headers=headers)
    assert later.status_code == 200  # still known for an hour


@pytest.mark.django_db(transaction=True)
async def test_waiting_for_a_token_nobody_used_answers_204_after_the_timeout():
    from django.test import AsyncClient

    alice = await sync_to_async(Account)()
    headers = {"Authorization": device_auth(alice.primary)}
    started = time.monotonic()

    response = await AsyncClient().get(f"/v1/devices/wait_for_linked_device/{'a' * 43}", {"timeout": "1"}, headers=headers)

    assert response.status_code == 204
    assert 0.9 < time.monotonic() - started < 3
    assert (await AsyncClient().get("/v1/devices/wait_for_linked_device/short", headers=headers)).status_code == 400
    bad_timeout = await AsyncClient().get(f"/v1/devices/wait_for_linked_device/{'a' * 43}", {"timeout": "0"}, headers=headers)
    assert bad_timeout.status_code == 400
    assert (await AsyncClient().get(f"/v1/devices/wait_for_linked_device/{'a' * 43}")).status_code == 401


@pytest.mark.django_db
def test_another_accounts_token_identifier_reveals_nothing(alice):
    token = alice.client().get("/v1/devices/provisioning/code").json()
    alice.link(token["verificationCode"])
    mallory = Account()

    response = mallory.client().get(f"/v1/devices/wait_for_linked_device/{token['tokenIdentifier']}?timeout=1")

    assert response.status_code == 204
