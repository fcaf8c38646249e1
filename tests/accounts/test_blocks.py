"""Blocking enforced by the server: identified messages from a blocked account are accepted and
dropped, its credentials read none of the blocker's prekeys or profile, unblocking restores both at
once; sealed-sender messages are blocked by the client rotating its access key."""

import base64
import os

import pytest

from accounts.models import Account
from keys.models import Identity, IdentityKey
from messaging.models import QueuedMessage
from tests.factories import DeviceFactory
from tests.messaging.helpers import all_devices, message_list

pytestmark = pytest.mark.django_db

ACCESS_KEY = bytes(range(16))


@pytest.fixture
def alice():
    device = DeviceFactory(account__unidentified_access_key=ACCESS_KEY)
    IdentityKey.objects.create(account=device.account, identity=Identity.ACI, public_key=b"\x05" + os.urandom(32))
    return device


@pytest.fixture
def mallory():
    return DeviceFactory()


def send(client_for, sender, recipient, **extra):
    body = message_list(all_devices(recipient.account), **extra)
    return client_for(sender).put(f"/v1/messages/{recipient.account.aci}", body, format="json")


def queued_for(device) -> int:
    return QueuedMessage.objects.filter(device__account=device.account).count()


def test_a_blocked_account_s_identified_messages_are_accepted_and_dropped_until_unblocked(client_for, alice, mallory):
    assert client_for(alice).put(f"/v1/accounts/blocks/{mallory.account.aci}").status_code == 204
    response = send(client_for, mallory, alice)
    assert (response.status_code, response.json()) == (200, {"needsSync": False})  # the sender cannot tell
    assert queued_for(alice) == 0

    assert client_for(alice).delete(f"/v1/accounts/blocks/{mallory.account.aci}").status_code == 204
    assert Account.objects.get(pk=alice.account.pk).blocks_someone is False  # its sends skip the check again
    assert send(client_for, mallory, alice).status_code == 200
    assert queued_for(alice) == 1


def test_a_block_of_the_pni_blocks_its_account_too(client_for, alice, mallory):
    client_for(alice).put(f"/v1/accounts/blocks/PNI:{mallory.account.pni}")
    send(client_for, mallory, alice)
    assert queued_for(alice) == 0


def test_a_blocked_sender_still_gets_the_device_checks_answers(client_for, alice, mallory):
    client_for(alice).put(f"/v1/accounts/blocks/{mallory.account.aci}")
    body = message_list([(1, alice.registration_id), (2, 1)])
    assert client_for(mallory).put(f"/v1/messages/{alice.account.aci}", body, format="json").status_code == 409


def test_others_still_reach_the_blocking_account(client_for, alice, mallory):
    client_for(alice).put(f"/v1/accounts/blocks/{mallory.account.aci}")
    send(client_for, DeviceFactory(), alice)
    assert queued_for(alice) == 1


def test_a_blocked_account_reads_neither_prekeys_nor_profile_with_its_credentials(client_for, alice, mallory):
    other = DeviceFactory()
    client_for(alice).put(f"/v1/accounts/blocks/{mallory.account.aci}")
    assert client_for(mallory).get(f"/v1/profile/{alice.account.aci}").status_code == 404
    assert client_for(mallory).get(f"/v2/keys/{alice.account.aci}/*").status_code == 404
    assert client_for(other).get(f"/v1/profile/{alice.account.aci}").status_code == 200

    client_for(alice).delete(f"/v1/accounts/blocks/{mallory.account.aci}")
    assert client_for(mallory).get(f"/v1/profile/{alice.account.aci}").status_code == 200


def test_sealed_sender_messages_are_blocked_by_rotating_the_access_key(client, client_for, alice, mallory):
    old_key = base64.b64encode(ACCESS_KEY).decode()
    sealed = message_list(all_devices(alice.account), type=6)
    path = f"/v1/messages/{alice.account.aci}"
    assert client.put(path, sealed, content_type="application/json", HTTP_UNIDENTIFIED_ACCESS_KEY=old_key).status_code == 200

    # What a client does when it blocks: block, and rotate its key (shared with everyone else anew).
    client_for(alice).put(f"/v1/accounts/blocks/{mallory.account.aci}")
    Account.objects.filter(pk=alice.account.pk).update(unidentified_access_key=os.urandom(16))
    assert client.put(path, sealed, content_type="application/json", HTTP_UNIDENTIFIED_ACCESS_KEY=old_key).status_code == 401


def test_the_list_shows_every_block_in_order_and_blocking_twice_is_harmless(client_for, alice, mallory):
    other = DeviceFactory()
    for target in (str(mallory.account.aci), f"PNI:{other.account.pni}", str(mallory.account.aci)):
        assert client_for(alice).put(f"/v1/accounts/blocks/{target}").status_code == 204
    assert client_for(alice).get("/v1/accounts/blocks").json() == {"blocks": [str(mallory.account.aci), f"PNI:{other.account.pni}"]}
    assert client_for(mallory).get("/v1/accounts/blocks").json() == {"blocks": []}


def test_malformed_ids_are_422_and_credentials_are_required(client, client_for, alice):
    assert client_for(alice).put("/v1/accounts/blocks/not-a-service-id").status_code == 422
    assert client.get("/v1/accounts/blocks").status_code == 401
    assert client.put(f"/v1/accounts/blocks/{alice.account.aci}").status_code == 401


def test_an_account_blocks_at_most_max_blocks(client_for, alice):
    import uuid

    from accounts.blocks.services import MAX_BLOCKS
    from accounts.models import Block

    Block.objects.bulk_create([Block(account=alice.account, blocked=uuid.uuid4()) for _ in range(MAX_BLOCKS - 1)])
    assert client_for(alice).put(f"/v1/accounts/blocks/{uuid.uuid4()}").status_code == 204
    assert client_for(alice).put(f"/v1/accounts/blocks/{uuid.uuid4()}").status_code == 413
