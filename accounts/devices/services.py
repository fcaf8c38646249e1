"""Linked devices: link tokens, linking a new device, listing and removing devices."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import MAX_DEVICES, PRIMARY_DEVICE_ID, Account, Device, UsedLinkToken
from accounts.registration.services import MIN_PASSWORD_LENGTH, REQUIRED_CAPABILITIES
from accounts.services import disconnect_devices
from keys.models import Identity, IdentityKey
from keys.services import SignedPreKeyData, store_repeated_use_keys, verify_signed_prekeys
from signalserver.crypto import server_key
from signalserver import ratelimit
from signalserver.auth import MAX_CREDENTIAL_LENGTH, SaltedTokenHash
from signalserver.errors import Conflict, DomainError, Forbidden, NotFound, Unauthorized, UnprocessableEntity
from signalserver.timestamps import end_of_hour
from signalserver.wire import b64encode_url

LINK_TOKEN_LIFETIME = timedelta(minutes=10)
# How long the primary can learn which device used its token (wait_for_linked_device).
LINKED_DEVICE_NOTICE_LIFETIME = timedelta(hours=1)
# Capabilities an account keeps once every device has them: a new device may not lack them.
DOWNGRADE_PREVENTED = ("spqr", "usernameChangeSyncMessage")


class DeviceLimitExceeded(DomainError):
    status = 411
    message = "Too many devices"

    def __init__(self, current: int):
        super().__init__(body={"current": current, "max": MAX_DEVICES})


@dataclass(frozen=True, slots=True)
class LinkToken:
    verification_code: str
    token_identifier: str


def _token_key() -> bytes:
    return server_key("link-device token")


def token_identifier(verification_code: str) -> str:
    return b64encode_url(hashlib.sha256(verification_code.encode()).digest(), padded=False)


def issue_link_token(*, account: Account, device: Device) -> LinkToken:
    """`GET /v1/devices/provisioning/code`: a single-use token, valid 10 minutes, for the primary."""
    ratelimit.check("allocateDevice", str(account.aci), aci=account.aci)
    if device.device_id != PRIMARY_DEVICE_ID:
        raise Unauthorized("only the primary device links devices")
    count = Device.objects.filter(account=account).count()
    if count >= MAX_DEVICES:
        raise DeviceLimitExceeded(count)
    claims = f"{account.aci}.{time.time_ns() // 1_000_000}"
    mac = hmac.new(_token_key(), claims.encode(), hashlib.sha256).digest()
    code = f"{claims}:{b64encode_url(mac, padded=False)}"
    return LinkToken(verification_code=code, token_identifier=token_identifier(code))


def _account_for_token(code: str) -> Account:
    """The account a valid, unexpired link token was issued for; 403 otherwise."""
    claims, _, mac = code.rpartition(":")
    aci_text, _, issued_text = claims.rpartition(".")
    expected = b64encode_url(hmac.new(_token_key(), claims.encode(), hashlib.sha256).digest(), padded=False)
    if not hmac.compare_digest(mac.encode(), expected.encode()) or not issued_text.isdigit():
        raise Forbidden("invalid link token")
    issued_ms = int(issued_text)
    if not 0 <= time.time_ns() // 1_000_000 - issued_ms <= LINK_TOKEN_LIFETIME // timedelta(milliseconds=1):
        raise Forbidden("link token expired")
    account = Account.objects.select_for_update(no_key=True).filter(aci=uuid.UUID(aci_text)).first()
    if account is None:
        raise Forbidden("the account no longer exists")
    return account


@transaction.atomic
def link_device(
    *,
    verification_code: str,
    password: str,
    attributes: dict,
    aci_signed_prekey: SignedPreKeyData,
    pni_signed_prekey: SignedPreKeyData | None,
    aci_pq_last_resort_prekey: SignedPreKeyData,
    pni_pq_last_resort_prekey: SignedPreKeyData | None,
    apn_token: str | None,
    gcm_token: str | None,
) -> Device:
    """`PUT /v1/devices/link`: add a device to the account the token names, with the next free id."""
    account = _account_for_token(verification_code)
    ratelimit.check("verifyDevice", str(account.aci), aci=account.aci)
    identifier = token_identifier(verification_code)
    try:
        with transaction.atomic():
            used = UsedLinkToken.objects.create(
                # Rounded up to the hour: the row does not record when the device was linked.
                identifier=identifier, expires_at=end_of_hour(timezone.now() + LINKED_DEVICE_NOTICE_LIFETIME)
            )
    except IntegrityError:
        raise Forbidden("link token already used") from None
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_CREDENTIAL_LENGTH:
        raise UnprocessableEntity(f"the password must be {MIN_PASSWORD_LENGTH} to {MAX_CREDENTIAL_LENGTH} characters")
    capabilities = attributes["capabilities"]
    if account.number is None and "optionalPhoneNumber" not in capabilities:
        raise Conflict("a device linked to an account without a number needs optionalPhoneNumber")

    identity_keys = dict(IdentityKey.objects.filter(account=account).values_list("identity", "public_key"))
    has_pni = account.pni is not None
    if has_pni != (pni_signed_prekey is not None and pni_pq_last_resort_prekey is not None):
        raise UnprocessableEntity("PNI prekeys are required exactly when the account has a PNI")
    if has_pni and attributes["pniRegistrationId"] is None:
        raise UnprocessableEntity("pniRegistrationId is required for an account with a PNI")
    verify_signed_prekeys(bytes(identity_keys.get(Identity.ACI, b"")), [aci_signed_prekey, aci_pq_last_resort_prekey])
    if has_pni:
        verify_signed_prekeys(bytes(identity_keys.get(Identity.PNI, b"")), [pni_signed_prekey, pni_pq_last_resort_prekey])

    devices = list(Device.objects.filter(account=account))
    if len(devices) >= MAX_DEVICES:
        raise DeviceLimitExceeded(len(devices))
    if any(name not in capabilities for name in REQUIRED_CAPABILITIES):
        raise Conflict("a required capability is missing")
    for name in DOWNGRADE_PREVENTED:
        if devices and all(name in device.capabilities for device in devices) and name not in capabilities:
            raise Conflict(f"linking this device would downgrade {name}")

    taken = {device.device_id for device in devices}
    device_id = next(candidate for candidate in range(2, MAX_DEVICES + 2) if candidate not in taken)
    credentials = SaltedTokenHash.generate(password)
    device = Device.objects.create(
        account=account,
        device_id=device_id,
        auth_token_hash=credentials.hash,
        auth_salt=credentials.salt,
        registration_id=attributes["registrationId"],
        pni_registration_id=attributes["pniRegistrationId"],
        name=attributes["name"],
        fetches_messages=attributes["fetchesMessages"],
        capabilities=capabilities,
        apn_id=apn_token or "",
        gcm_id=gcm_token or "",
        last_seen=timezone.now().date(),
    )
    keys = {Identity.ACI: (aci_signed_prekey, aci_pq_last_resort_prekey)}
    if has_pni:
        keys[Identity.PNI] = (pni_signed_prekey, pni_pq_last_resort_prekey)
    store_repeated_use_keys(device=device, keys=keys)
    used.device = device
    used.save(update_fields=["device"])
    transaction.on_commit(lambda: _announce_linked_device(identifier))
    return device


def linked_device_group(identifier: str) -> str:
    return f"linked.{identifier}"


def _announce_linked_device(identifier: str) -> None:
    layer = get_channel_layer()
    async_to_sync(layer.group_send)(linked_device_group(identifier), {"type": "device.linked"})


def check_link_wait_rate(*, account: Account) -> None:
    """`waitForLinkedDevice`: each wait costs a permit of the account, before it starts waiting."""
    ratelimit.check("waitForLinkedDevice", str(account.aci), aci=account.aci)


def send_provisioning_message(*, account: Account, address: str, envelope: bytes) -> None:
    """`PUT /v1/provisioning/{address}`: hand a ProvisionEnvelope to the socket waiting on that
    address (404 when none is). Counted by the sender's `messages` bucket."""
    from accounts.consumers import deliver_provisioning_message

    ratelimit.check("messages", str(account.aci), aci=account.aci)
    if not async_to_sync(deliver_provisioning_message)(address, envelope):
        raise NotFound()


def get_linked_device(*, account: Account, identifier: str) -> Device | None:
    """The device of `account` linked with the token `identifier` within the last hour, if any."""
    used = (
        UsedLinkToken.objects.select_related("device")
        .filter(identifier=identifier, expires_at__gt=timezone.now(), device__account=account)
        .first()
    )
    return used.device if used else None


@transaction.atomic
def remove_device(*, account: Account, caller: Device, device_id: int) -> None:
    """`DELETE /v1/devices/{id}`: the primary removes any linked device, a linked device itself.

    The device's keys and queue go with its row (cascade); its sockets close with 4401.
    """
    if device_id == PRIMARY_DEVICE_ID:
        raise Forbidden("the primary device cannot be removed")
    if caller.device_id != PRIMARY_DEVICE_ID and caller.device_id != device_id:
        raise Unauthorized("a linked device may only remove itself")
    deleted, _ = Device.objects.filter(account=account, device_id=device_id).delete()
    if deleted:
        disconnect_devices(aci=account.aci, device_ids=[device_id])


def purge_used_link_tokens() -> None:
    UsedLinkToken.objects.filter(expires_at__lt=timezone.now()).delete()
