"""POST /v1/registration of a number that already has an account: re-registration, device transfer
and the registration lock."""

import asyncio
import os
import uuid
from datetime import UTC, datetime, time, timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.utils import timezone

from accounts.models import Account, Device, RegistrationRecoveryPassword, UsernameClaim, UsernameLink
from accounts.services import check_recovery_password, device_group, set_registration_lock, store_recovery_password
from keys.models import Identity, IdentityKey, KemPreKey, LastResortKey, OneTimePreKey, SignedPreKey
from signalserver.auth import LOCKED_PREFIX, SaltedTokenHash, authenticate_device
from signalserver.wire import b64decode, b64encode, b64encode_url
from tests.accounts.test_registration import PASSWORD, register, registration_body, verification_session
from tests.crypto import ec_public_key, kem_public_key
from tests.factories import DEFAULT_PASSWORD, DeviceFactory

NUMBER = "+14155550123"
LOCK = "5f" * 32


def existing_primary(*, capabilities=(), last_seen_days_ago=0, lock=None) -> Device:
    primary = DeviceFactory(
        account__number=NUMBER,
        capabilities=list(capabilities),
        last_seen=timezone.now().date() - timedelta(days=last_seen_days_ago),
    )
    if lock:
        set_registration_lock(account=primary.account, lock=lock)
    return primary


def give_keys(device: Device) -> None:
    """Every kind of key, for both identities, as the keys endpoints would store them."""
    for identity in Identity:
        SignedPreKey.objects.create(
            device=device, identity=identity, key_id=1, public_key=ec_public_key(), signature=os.urandom(64)
        )
        LastResortKey.objects.create(
            device=device, identity=identity, key_id=2, public_key=kem_public_key(), signature=os.urandom(64)
        )
        OneTimePreKey.objects.create(device=device, identity=identity, key_id=3, public_key=ec_public_key())
        KemPreKey.objects.create(
            device=device, identity=identity, key_id=4, public_key=kem_public_key(), signature=os.urandom(64)
        )


def register_number(**fields):
    return register(NUMBER, registration_body(sessionId=verification_session(NUMBER), **fields))


def listen(*groups) -> str:
    """A channel-layer channel in these device groups: it receives what their sockets would."""
    channel = f"test.listener.{uuid.uuid4().hex}"
    for group in groups:
        async_to_sync(get_channel_layer().group_add)(group, channel)
    return channel


def received(channel: str, count: int) -> list[dict]:
    async def collect():
        layer = get_channel_layer()
        return [await asyncio.wait_for(layer.receive(channel), timeout=5) for _ in range(count)]

    return async_to_sync(collect)()


def lock_expiry(last_seen_days_ago: int) -> datetime:
    last_seen = timezone.now().date() - timedelta(days=last_seen_days_ago)
    return datetime.combine(last_seen, time.min, tzinfo=UTC) + timedelta(days=7)


# --- re-registration -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_reregistration_keeps_the_aci_and_replaces_every_device_and_key(django_capture_on_commit_callbacks):
    primary = existing_primary(capabilities=["storage", "spqr"])
    account = primary.account
    linked = DeviceFactory(account=account, device_id=2)
    for device in (primary, linked):
        give_keys(device)
    IdentityKey.objects.create(account=account, identity=Identity.ACI, public_key=ec_public_key())
    IdentityKey.objects.create(account=account, identity=Identity.PNI, public_key=ec_public_key())
    channel = listen(device_group(account.aci, 1), device_group(account.aci, 2))

    body = registration_body(sessionId=verification_session(NUMBER))
    with django_capture_on_commit_callbacks(execute=True):
        response = register(NUMBER, body)

    assert response.status_code == 200, response.content
    payload = response.json()
    assert (payload["uuid"], payload["pni"]) == (str(account.aci), str(account.pni))
    assert payload["reregistration"] is True
    assert payload["storageCapable"] is True
    assert Account.objects.count() == 1

    new_primary = Device.objects.get()
    assert new_primary.account_id == account.aci and new_primary.device_id == 1
    assert new_primary.pk != primary.pk
    assert authenticate_device(str(account.aci), PASSWORD) is not None
    assert authenticate_device(str(account.aci), DEFAULT_PASSWORD) is None
    assert authenticate_device(f"{account.aci}.2", DEFAULT_PASSWORD) is None

    assert not OneTimePreKey.objects.exists() and not KemPreKey.objects.exists()
    assert set(SignedPreKey.objects.values_list("device_id", "identity", "key_id")) == {
        (new_primary.pk, Identity.ACI, 11),
        (new_primary.pk, Identity.PNI, 12),
    }
    assert set(LastResortKey.objects.values_list("device_id", "identity", "key_id")) == {
        (new_primary.pk, Identity.ACI, 13),
        (new_primary.pk, Identity.PNI, 14),
    }
    identity_keys = {key.identity: bytes(key.public_key) for key in IdentityKey.objects.all()}
    assert identity_keys == {
        Identity.ACI: b64decode(body["aciIdentityKey"]),
        Identity.PNI: b64decode(body["pniIdentityKey"]),
    }
    # Both old devices' sockets are told to close.
    assert received(channel, 2) == [{"type": "device.disconnect", "code": 4401}] * 2


@pytest.mark.django_db
def test_reregistration_answers_with_the_username_and_link_the_account_keeps():
    account = existing_primary(capabilities=["spqr"]).account
    username_hash = os.urandom(32)
    UsernameClaim.objects.create(account=account, hash=username_hash, kind=UsernameClaim.CONFIRMED)
    link = UsernameLink.objects.create(account=account, encrypted_value=os.urandom(32))

    response = register_number()

    assert response.status_code == 200, response.content
    assert response.json()["reregistration"] is True
    assert response.json()["usernameHash"] == b64encode_url(username_hash, padded=False)
    assert response.json()["usernameLinkHandle"] == str(link.handle)


@pytest.mark.django_db
def test_storage_capable_reflects_the_previous_account_not_the_new_device():
    existing_primary(capabilities=["spqr"])
    response = register_number()  # the new device declares storage
    assert response.status_code == 200, response.content
    assert response.json()["storageCapable"] is False


@pytest.mark.django_db
def test_reregistration_with_the_right_lock_sets_it_again():
    existing_primary(lock=LOCK)
    assert register_number(attributes={"registrationLock": LOCK}).status_code == 200
    account = Account.objects.get()
    assert SaltedTokenHash(account.registration_lock_hash, account.registration_lock_salt).verify(LOCK)


@pytest.mark.django_db
@pytest.mark.parametrize("new_lock", [None, "a1" * 32])
def test_reregistration_after_the_lock_lapsed_takes_the_lock_from_the_attributes(new_lock):
    existing_primary(lock=LOCK, last_seen_days_ago=8)
    assert register_number(attributes={"registrationLock": new_lock}).status_code == 200
    account = Account.objects.get()
    assert account.has_registration_lock is (new_lock is not None)
    if new_lock:
        assert SaltedTokenHash(account.registration_lock_hash, account.registration_lock_salt).verify(new_lock)


@pytest.mark.django_db
def test_reregistration_keeps_the_recovery_password_unless_a_new_one_is_given():
    primary = existing_primary()
    old, new = os.urandom(32), os.urandom(32)
    store_recovery_password(pni=primary.account.pni, password=old)
    assert register_number().status_code == 200
    assert check_recovery_password(pni=primary.account.pni, password=old)
    assert register_number(attributes={"recoveryPassword": b64encode(new)}).status_code == 200
    assert check_recovery_password(pni=primary.account.pni, password=new)


# --- device transfer -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_primary_able_to_transfer_gets_409_until_the_user_skips_the_transfer():
    primary = existing_primary(capabilities=["transfer"])
    response = register_number()
    assert response.status_code == 409
    assert list(Device.objects.all()) == [primary]
    assert not IdentityKey.objects.exists()

    response = register_number(skipDeviceTransfer=True)
    assert response.status_code == 200, response.content
    assert response.json()["reregistration"] is True


@pytest.mark.django_db
def test_transfer_capability_of_a_linked_device_does_not_offer_a_transfer():
    primary = existing_primary()
    DeviceFactory(account=primary.account, device_id=2, capabilities=["transfer"])
    assert register_number().status_code == 200


# --- registration lock ---------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("days_ago", [0, 6])
@pytest.mark.parametrize("given_lock", [None, "", "00" * 32])
def test_registration_lock_in_force_requires_the_lock(days_ago, given_lock):
    existing_primary(lock=LOCK, last_seen_days_ago=days_ago)
    response = register_number(attributes={"registrationLock": given_lock})

    assert response.status_code == 423
    body = response.json()
    assert set(body) == {"timeRemaining", "svr2Credentials"}
    assert body["svr2Credentials"] is None
    expected_ms = (lock_expiry(days_ago) - timezone.now()) / timedelta(milliseconds=1)
    assert abs(body["timeRemaining"] - expected_ms) < 60_000
    assert Device.objects.count() == 1 and not IdentityKey.objects.exists()


@pytest.mark.django_db
def test_failed_registration_lock_locks_the_account_out(django_capture_on_commit_callbacks):
    primary = existing_primary(lock=LOCK)
    account = primary.account
    linked = DeviceFactory(account=account, device_id=2)
    store_recovery_password(pni=account.pni, password=os.urandom(32))
    assert authenticate_device(f"{account.aci}.2", DEFAULT_PASSWORD) is not None
    channel = listen(device_group(account.aci, 1), device_group(account.aci, 2))

    with django_capture_on_commit_callbacks(execute=True):
        response = register_number()

    assert response.status_code == 423
    for device in (primary, linked):
        device.refresh_from_db()
        assert device.auth_token_hash.startswith(LOCKED_PREFIX)
        assert authenticate_device(f"{account.aci}.{device.device_id}", DEFAULT_PASSWORD) is None
    assert not RegistrationRecoveryPassword.objects.filter(pni=account.pni).exists()
    assert received(channel, 2) == [{"type": "device.disconnect", "code": 4401}] * 2

    # A second failure does not lock the credentials twice.
    assert register_number().status_code == 423
    primary.refresh_from_db()
    assert primary.auth_token_hash.startswith(LOCKED_PREFIX) and not primary.auth_token_hash.startswith("!!")


@pytest.mark.django_db
def test_correct_registration_lock_registers_even_after_a_failed_attempt():
    primary = existing_primary(lock=LOCK)
    assert register_number().status_code == 423
    response = register_number(attributes={"registrationLock": LOCK})
    assert response.status_code == 200, response.content
    assert response.json()["uuid"] == str(primary.account.aci)
    assert response.json()["reregistration"] is True


@pytest.mark.django_db
@pytest.mark.parametrize("days_ago", [7, 30])
def test_registration_lock_lapses_7_days_after_the_account_was_last_seen(days_ago):
    primary = existing_primary(lock=LOCK, last_seen_days_ago=days_ago)
    response = register_number()
    assert response.status_code == 200, response.content
    assert response.json()["uuid"] == str(primary.account.aci)
    assert not Account.objects.get().has_registration_lock


@pytest.mark.django_db
def test_registration_lock_counts_the_most_recently_seen_device():
    primary = existing_primary(lock=LOCK, last_seen_days_ago=20)
    DeviceFactory(account=primary.account, device_id=2, last_seen=timezone.now().date() - timedelta(days=1))
    assert register_number().status_code == 423
