"""Every state change of accounts and devices (registration and verification have their own
service modules, `accounts.registration` and `accounts.verification`)."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone

from accounts import selectors
from accounts.models import PRIMARY_DEVICE_ID, Account, DeletedAccount, Device, RegistrationRecoveryPassword
from groups.services import remove_account as remove_from_groups
from signalserver import ratelimit
from signalserver.auth import SaltedTokenHash
from signalserver.errors import BadRequest, Forbidden, NotFound

logger = logging.getLogger(__name__)

CLOSE_CREDENTIALS_CHANGED = 4401


def device_group(aci, device_id: int) -> str:
    """The channel-layer group every live socket of one device joins."""
    return f"device.{aci}.{device_id}"


def disconnect_devices(*, aci, device_ids, code: int = CLOSE_CREDENTIALS_CHANGED) -> None:
    """Close the live sockets of these devices, once the current transaction commits."""
    device_ids = list(device_ids)

    def send():
        layer = get_channel_layer()
        if layer is None:
            return
        for device_id in device_ids:
            async_to_sync(layer.group_send)(device_group(aci, device_id), {"type": "device.disconnect", "code": code})

    transaction.on_commit(send)


def check_account_existence(service_id, *, client_ip: str | None) -> bool:
    """`HEAD /v1/accounts/account/{id}`: counted per client address (`checkAccountExistence`)."""
    ratelimit.check("checkAccountExistence", ratelimit.hashed(client_ip) if client_ip else None)
    return selectors.account_exists(service_id)


def set_account_banned(*, account: Account, banned: bool) -> None:
    """An operator's ban (or unban): a banned account's requests are refused at authentication and
    its open sockets close with 4401 once this commits."""
    Account.objects.filter(pk=account.pk).update(banned=banned)
    account.banned = banned
    if banned:
        disconnect_devices(aci=account.aci, device_ids=account.devices.values_list("device_id", flat=True))


def store_recovery_password(*, pni, password: bytes) -> None:
    """Keep the number's registration recovery password (as a salted hash, never in clear)."""
    hashed = SaltedTokenHash.generate(password.hex())
    RegistrationRecoveryPassword.objects.update_or_create(
        pni=pni, defaults={"password_hash": hashed.hash, "salt": hashed.salt}
    )


def check_recovery_password(*, pni, password: bytes) -> bool:
    stored = RegistrationRecoveryPassword.objects.filter(pni=pni).first()
    return stored is not None and SaltedTokenHash(stored.password_hash, stored.salt).verify(password.hex())


def set_registration_lock(*, account: Account, lock: str | None) -> None:
    """Set (non-empty) or clear (empty/None) the account's registration lock."""
    apply_registration_lock(account=account, lock=lock)
    account.save(update_fields=["registration_lock_hash", "registration_lock_salt"])


def apply_registration_lock(*, account: Account, lock: str | None) -> None:
    """`set_registration_lock` without the save, for a caller that saves the account anyway
    (registration writes the new account's row once)."""
    if lock:
        hashed = SaltedTokenHash.generate(lock)
        account.registration_lock_hash, account.registration_lock_salt = hashed.hash, hashed.salt
    else:
        account.registration_lock_hash = account.registration_lock_salt = ""


@transaction.atomic
def set_account_attributes(*, account: Account, device: Device, attributes: dict, user_agent: str = "") -> None:
    """`PUT /v1/accounts/attributes`: full replacement; registration ids never change."""
    if attributes["discoverableByPhoneNumber"] and account.number is None:
        raise BadRequest("discoverableByPhoneNumber requires a phone number")
    if attributes["recoveryPassword"] and account.pni is None:
        raise BadRequest("a recovery password requires a phone number")
    device.fetches_messages = attributes["fetchesMessages"]
    device.name = attributes["name"]
    device.capabilities = attributes["capabilities"]
    device.last_seen = timezone.now().date()
    device_fields = ["fetches_messages", "name", "capabilities", "last_seen"]
    if user_agent.strip():
        device.user_agent = user_agent.strip()[: Device._meta.get_field("user_agent").max_length]
        device_fields.append("user_agent")
    device.save(update_fields=device_fields)

    account.unidentified_access_key = attributes["unidentifiedAccessKey"]
    account.unrestricted_unidentified_access = attributes["unrestrictedUnidentifiedAccess"]
    account.discoverable_by_phone_number = attributes["discoverableByPhoneNumber"]
    account.save(
        update_fields=["unidentified_access_key", "unrestricted_unidentified_access", "discoverable_by_phone_number"]
    )
    set_registration_lock(account=account, lock=attributes["registrationLock"])
    if attributes["recoveryPassword"]:
        store_recovery_password(pni=account.pni, password=attributes["recoveryPassword"])


def set_device_name(*, account: Account, caller: Device, device_id: int | None, name: bytes) -> None:
    """`PUT /v1/accounts/name`: the encrypted name of the caller's device, or (the primary only)
    of another device of the account; 403 for a linked device naming another, 404 for no such
    device."""
    target = caller.device_id if device_id is None else device_id
    if target != caller.device_id and caller.device_id != PRIMARY_DEVICE_ID:
        raise Forbidden("Only the primary device names other devices")
    if not Device.objects.filter(account=account, device_id=target).update(name=name):
        raise NotFound()


def set_device_capabilities(*, device: Device, capabilities: list[str]) -> None:
    """`PUT /v1/devices/capabilities`: replace the calling device's capabilities."""
    Device.objects.filter(pk=device.pk).update(capabilities=capabilities)


def set_phone_number_discoverability(*, account: Account, discoverable: bool) -> None:
    """`PUT /v2/accounts/phone_number_discoverability` (400: discoverable without a number)."""
    if discoverable and account.number is None:
        raise BadRequest("discoverableByPhoneNumber requires a phone number")
    Account.objects.filter(pk=account.pk).update(discoverable_by_phone_number=discoverable)


@transaction.atomic
def delete_account(*, account: Account) -> None:
    """Delete the account and everything it owns; its number may get the ACI back for a while."""
    device_ids = list(account.devices.values_list("device_id", flat=True))
    if account.number:
        DeletedAccount.objects.update_or_create(
            number=account.number, defaults={"aci": account.aci, "deleted_at": timezone.now().date()}
        )
    if account.pni:
        RegistrationRecoveryPassword.objects.filter(pni=account.pni).delete()
    # Out of every group's current state, by a change the server makes (docs/privacy.md, "Groups").
    remove_from_groups(account=account)
    aci = account.aci  # delete() clears the primary key
    # Devices cascade to their keys and queued messages; identity keys cascade from the account.
    account.delete()
    disconnect_devices(aci=aci, device_ids=device_ids)
