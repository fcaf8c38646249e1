"""Usernames through the real routes: reservations, confirmation, holds, lookups by hash,
username links; and many accounts reserving one hash at once, each on its own database connection."""

import os
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import UsernameClaim, UsernameLink
from accounts.usernames.services import HOLD_DAYS, purge_expired_claims
from signalserver.wire import b64encode_url
from tests.factories import DeviceFactory, override_limit

RESERVE, CONFIRM, HASH, LINK = (
    "/v1/accounts/username_hash/reserve",
    "/v1/accounts/username_hash/confirm",
    "/v1/accounts/username_hash",
    "/v1/accounts/username_link",
)


def new_hash() -> bytes:
    return os.urandom(32)


def b64(value: bytes) -> str:
    return b64encode_url(value, padded=False)


def reserve(client_for, device, *hashes):
    return client_for(device).put(RESERVE, {"usernameHashes": [b64(h) for h in hashes]}, format="json")


def confirm(client_for, device, value: bytes, encrypted=None):
    body = {"usernameHash": b64(value), "zkProof": b64(os.urandom(100)), "encryptedUsername": b64(encrypted) if encrypted else None}
    return client_for(device).put(CONFIRM, body, format="json")


def username_of(client_for, device):
    return client_for(device).get("/v1/accounts/whoami").json()["usernameHash"]


@pytest.fixture
def alice():
    return DeviceFactory()


@pytest.fixture
def bob():
    return DeviceFactory()


@pytest.mark.django_db
def test_a_reserved_hash_is_confirmed_found_by_anyone_and_shown_in_whoami(client, client_for, alice):
    value = new_hash()
    assert reserve(client_for, alice, value).json() == {"usernameHash": b64(value)}
    response = confirm(client_for, alice, value)
    assert response.status_code == 200
    assert response.json() == {"usernameHash": b64(value), "usernameLinkHandle": None}
    assert username_of(client_for, alice) == b64(value)
    assert client.get(f"{HASH}/{b64(value)}").json() == {"uuid": str(alice.account.aci)}


@pytest.mark.django_db
def test_the_first_candidate_no_one_else_has_is_reserved(client_for, alice, bob):
    taken, free = new_hash(), new_hash()
    reserve(client_for, alice, taken)
    assert reserve(client_for, bob, taken, free).json() == {"usernameHash": b64(free)}
    assert reserve(client_for, bob, taken).status_code == 409
    assert reserve(client_for, alice, taken).json() == {"usernameHash": b64(taken)}  # its own: again


@pytest.mark.django_db
def test_a_lapsed_reservation_is_anyones_and_cannot_be_confirmed(client_for, alice, bob):
    value = new_hash()
    reserve(client_for, alice, value)
    UsernameClaim.objects.update(expires=timezone.now() - timedelta(seconds=1))
    assert confirm(client_for, alice, value).status_code == 409
    assert reserve(client_for, bob, value).status_code == 200
    assert confirm(client_for, alice, value).status_code == 410  # bob has it now


@pytest.mark.django_db
def test_confirming_without_a_reservation_is_409(client_for, alice):
    assert confirm(client_for, alice, new_hash()).status_code == 409


@pytest.mark.django_db
def test_a_given_up_username_is_held_for_its_account_for_seven_days(client, client_for, alice, bob):
    first, second = new_hash(), new_hash()
    reserve(client_for, alice, first)
    confirm(client_for, alice, first)
    reserve(client_for, alice, second)
    confirm(client_for, alice, second)  # first becomes a hold
    assert client.get(f"{HASH}/{b64(first)}").status_code == 404
    assert reserve(client_for, bob, first).status_code == 409
    hold = UsernameClaim.objects.get(hash=first)
    assert hold.kind == "held" and hold.expires > timezone.now() + timedelta(days=HOLD_DAYS - 1)

    assert client_for(alice).delete(HASH).status_code == 204  # second is held too
    assert username_of(client_for, alice) is None
    assert reserve(client_for, alice, first).status_code == 200  # its own hold

    UsernameClaim.objects.filter(kind="held").update(expires=timezone.now() - timedelta(seconds=1))
    assert reserve(client_for, bob, second).status_code == 200
    assert purge_expired_claims() == 0  # bob replaced the lapsed hold; alice's first is reserved again


@pytest.mark.django_db
def test_an_account_keeps_at_most_three_holds(client_for, alice):
    values = [new_hash() for _ in range(5)]
    for value in values:
        reserve(client_for, alice, value)
        confirm(client_for, alice, value)
    held = set(bytes(h) for h in UsernameClaim.objects.filter(kind="held").values_list("hash", flat=True))
    assert held == set(values[1:4])


@pytest.mark.django_db
def test_the_username_link_is_set_read_by_anyone_kept_or_renewed_and_removed(client, client_for, alice):
    value, secret = new_hash(), os.urandom(64)
    assert client_for(alice).put(LINK, {"usernameLinkEncryptedValue": b64(secret)}, format="json").status_code == 409  # no username
    reserve(client_for, alice, value)
    handle = confirm(client_for, alice, value, encrypted=secret).json()["usernameLinkHandle"]
    assert client.get(f"{LINK}/{handle}").json() == {"usernameLinkEncryptedValue": b64(secret), "keepLinkHandle": False}

    kept = client_for(alice).put(LINK, {"usernameLinkEncryptedValue": b64(b"x" * 32), "keepLinkHandle": True}, format="json").json()
    assert kept == {"usernameLinkHandle": handle}
    renewed = client_for(alice).put(LINK, {"usernameLinkEncryptedValue": b64(b"y" * 32)}, format="json").json()["usernameLinkHandle"]
    assert renewed != handle and client.get(f"{LINK}/{handle}").status_code == 404
    assert client_for(alice).get("/v1/accounts/whoami").json()["usernameLinkHandle"] == renewed

    assert client_for(alice).delete(LINK).status_code == 204
    assert client.get(f"{LINK}/{renewed}").status_code == 404


@pytest.mark.django_db
def test_lookups_must_be_anonymous_well_formed_and_are_limited_per_address(client, client_for, alice):
    value = new_hash()
    assert client_for(alice).get(f"{HASH}/{b64(value)}").status_code == 400
    assert client_for(alice).get(f"{LINK}/{uuid.uuid4()}").status_code == 400
    assert client.get(f"{HASH}/{b64(os.urandom(31))}").status_code == 422
    assert client.get(f"{HASH}/not*base64").status_code == 422
    assert client.get(f"{LINK}/not-a-uuid").status_code == 422
    override_limit("usernameLookup", 2, 3600)
    assert [client.get(f"{HASH}/{b64(value)}").status_code for _ in range(3)] == [404, 404, 429]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [{"usernameHashes": []}, {"usernameHashes": [b64(os.urandom(31))]}, {"usernameHashes": [b64(os.urandom(32))] * 21}, {}],
)
def test_malformed_reservations_are_422(client_for, alice, body):
    assert client_for(alice).put(RESERVE, body, format="json").status_code == 422


@pytest.mark.django_db
def test_reservations_are_limited_per_account(client_for, alice):
    override_limit("usernameReserve", 2, 3600)
    assert [reserve(client_for, alice, new_hash()).status_code for _ in range(3)] == [200, 200, 429]


@pytest.mark.django_db
def test_a_deleted_account_frees_its_username_and_link(client, client_for, alice):
    value = new_hash()
    reserve(client_for, alice, value)
    confirm(client_for, alice, value, encrypted=b"z" * 16)
    client_for(alice).delete("/v1/accounts/me")
    assert not UsernameClaim.objects.exists() and not UsernameLink.objects.exists()
    assert client.get(f"{HASH}/{b64(value)}").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_of_many_threads_reserving_one_hash_at_once_exactly_one_wins():
    import threading

    from django.db import connection

    from accounts.usernames import services as usernames
    from signalserver.errors import Conflict

    accounts = [DeviceFactory().account for _ in range(8)]
    contested, start, outcomes = new_hash(), threading.Barrier(8), []

    def attempt(account):
        try:
            start.wait(timeout=10)
            outcomes.append(usernames.reserve(account=account, hashes=[contested]))
        except Conflict:
            outcomes.append("taken")
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt, args=(account,)) for account in accounts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes, key=str) == [contested] + ["taken"] * 7
    assert UsernameClaim.objects.filter(hash=contested).count() == 1
