"""Registration of a phone number's primary device: a new account, or re-registration of an existing
one that keeps its ACI and replaces its devices and keys."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import cache
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from accounts.models import (
    PRIMARY_DEVICE_ID,
    Account,
    DeletedAccount,
    Device,
    PhoneNumberIdentifier,
    RegistrationRecoveryPassword,
)
from accounts.phone import normalize_number
from accounts.services import (
    apply_registration_lock,
    check_recovery_password,
    disconnect_devices,
    store_recovery_password,
)
from accounts.totp.services import check_registration_totp
from accounts.verification.services import find_live_session
from keys.models import Identity
from push.services import FAILED_REGISTRATION_LOCK, alert_attempted_login
from keys.services import SignedPreKeyData, set_identity_keys, store_repeated_use_keys, verify_signed_prekeys
from signalserver import metrics, ratelimit, rows
from signalserver.db import as_uuid, bound_cursor, for_update
from signalserver.rows import RowLoader
from signalserver.auth import LOCKED_PREFIX, MAX_CREDENTIAL_LENGTH, SaltedTokenHash
from signalserver.errors import (
    BadRequest,
    DeviceTransferAvailable,
    Forbidden,
    MissingCapability,
    RegistrationLockRequired,
    Unauthorized,
    UnprocessableEntity,
)
from signalserver.wire import b64decode_url

# Capabilities every new device must declare (Signal: "required for new devices").
REQUIRED_CAPABILITIES = ("spqr",)
MIN_PASSWORD_LENGTH = 16
# A registration lock is enforced only while the account was seen this recently.
REGISTRATION_LOCK_LIFETIME = timedelta(days=7)
# A number registered again this soon after its account was deleted gets the old ACI back.
ACCOUNT_ATTRIBUTE_FIELDS = [
    "unidentified_access_key",
    "unrestricted_unidentified_access",
    "discoverable_by_phone_number",
    "registration_lock_hash",
    "registration_lock_salt",
]


@dataclass(frozen=True, slots=True)
class RegistrationResult:
    account: Account
    device: Device
    reregistration: bool
    storage_capable: bool  # the previous account had the `storage` capability on some device


@dataclass(frozen=True, slots=True)
class _LockedOut:
    time_remaining_ms: int


def register_account(
    *,
    number: str,
    password: str,
    user_agent: str = "",
    session_id: str | None,
    recovery_password: bytes | None,
    receipt_credential_presentation: bytes | None,
    skip_device_transfer: bool,
    account_attributes: dict,
    aci_identity_key: bytes,
    pni_identity_key: bytes | None,
    aci_signed_prekey: SignedPreKeyData,
    pni_signed_prekey: SignedPreKeyData | None,
    aci_pq_last_resort_prekey: SignedPreKeyData,
    pni_pq_last_resort_prekey: SignedPreKeyData | None,
    apn_token: str | None,
    gcm_token: str | None,
    totp: str | None = None,
) -> RegistrationResult:
    """Register the number's primary device: a new account, or the number's account re-registered.

    The request's shape (one proof, delivery channel, PNI material all-or-none) is checked by
    `RegistrationSerializer`; the checks below follow Signal's processing order. A
    `receipt_credential_presentation` (zkgroup) is never accepted as the proof.
    """
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_CREDENTIAL_LENGTH:
        # The authenticator refuses longer passwords, so such a device could never log in.
        raise UnprocessableEntity(
            f"the password must be {MIN_PASSWORD_LENGTH} to {MAX_CREDENTIAL_LENGTH} characters"
        )
    # Every registration here is a number registration, and those need the PNI material.
    if pni_identity_key is None:
        raise UnprocessableEntity("a phone number registration needs the PNI identity key and prekeys")

    verify_signed_prekeys(aci_identity_key, [aci_signed_prekey, aci_pq_last_resort_prekey])
    verify_signed_prekeys(pni_identity_key, [pni_signed_prekey, pni_pq_last_resort_prekey])

    if any(name not in account_attributes["capabilities"] for name in REQUIRED_CAPABILITIES):
        raise MissingCapability()

    number = normalize_number(number)
    ratelimit.check("registration", ratelimit.hashed(number))
    _verify_number_proof(number=number, session_id=session_id, recovery_password=recovery_password)

    outcome = _create_or_reregister(
        number=number,
        password=password,
        user_agent=user_agent,
        skip_device_transfer=skip_device_transfer,
        attributes=account_attributes,
        aci_identity_key=aci_identity_key,
        pni_identity_key=pni_identity_key,
        aci_keys=(aci_signed_prekey, aci_pq_last_resort_prekey),
        pni_keys=(pni_signed_prekey, pni_pq_last_resort_prekey),
        apn_token=apn_token,
        gcm_token=gcm_token,
        totp=totp,
    )
    if isinstance(outcome, _LockedOut):
        # Raised only now, after the lock-out committed: the 423 must not roll it back.
        raise RegistrationLockRequired(outcome.time_remaining_ms)
    (metrics.REREGISTRATION if outcome.reregistration else metrics.NEW_ACCOUNT).inc()
    return outcome


def _verify_number_proof(*, number: str, session_id: str | None, recovery_password: bytes | None) -> None:
    """The caller controls the number: a verified session for it, or its recovery password.

    The request carries exactly one proof; when it is neither of these it is a receipt credential
    presentation, a zkgroup proof for number-less accounts, which this server cannot check.
    """
    if session_id is not None:
        try:
            raw_id = b64decode_url(session_id)
        except ValueError:
            raise BadRequest("invalid session id") from None
        session = find_live_session(raw_id)
        if session is None or session.number != number:
            raise BadRequest("no verification session for this number")
        if not session.verified:
            raise Unauthorized("verification session not verified")
        return
    if recovery_password is not None:
        pni = PhoneNumberIdentifier.objects.filter(number=number).values_list("pni", flat=True).first()
        if pni is None or not check_recovery_password(pni=pni, password=recovery_password):
            raise Forbidden("recovery password rejected")
        return
    raise Forbidden("receipt credential presentations are not supported")


@transaction.atomic
def _create_or_reregister(
    *,
    number: str,
    password: str,
    user_agent: str,
    skip_device_transfer: bool,
    attributes: dict,
    aci_identity_key: bytes,
    pni_identity_key: bytes,
    aci_keys: tuple[SignedPreKeyData, SignedPreKeyData],
    pni_keys: tuple[SignedPreKeyData, SignedPreKeyData],
    apn_token: str | None,
    gcm_token: str | None,
    totp: str | None,
) -> RegistrationResult | _LockedOut:
    """Everything from the existing-account checks to the new primary, under the number's lock.

    A failed registration lock returns `_LockedOut` instead of raising, so that its side effects
    (locked credentials, closed sockets, removed recovery password) commit.
    """
    # Every registration of one number serialises on its PNI row: the existing-account
    # checks below and the writes after them see no concurrent registration of the number. A new
    # number's row is inserted first (no savepoint: a concurrent insert of the same number waits
    # for this transaction, then does nothing), and locked by the same read as an existing one.
    PhoneNumberIdentifier.objects.bulk_create([PhoneNumberIdentifier(number=number)], ignore_conflicts=True)
    # Locking the account too keeps a concurrent deletion from pulling it away under the new device.
    # Both reads are written once (signalserver.rows): every new account makes them.
    pni, existing = _locked_number(number)
    old_devices = list(existing.devices.all()) if existing else []
    if existing is not None:
        primary = next((device for device in old_devices if device.device_id == PRIMARY_DEVICE_ID), None)
        if primary is not None and "transfer" in primary.capabilities and not skip_device_transfer:
            raise DeviceTransferAvailable()
        time_remaining = _registration_lock_time_remaining(existing, old_devices)
        if time_remaining is not None and attributes["registrationLock"]:
            ratelimit.check("pin", ratelimit.hashed(number))  # each guess at the lock costs a permit
        if time_remaining is not None and not _registration_lock_matches(existing, attributes["registrationLock"]):
            _lock_out(existing, old_devices)
            return _LockedOut(time_remaining_ms=time_remaining // timedelta(milliseconds=1))
        if time_remaining is not None:
            ratelimit.reset("pin", ratelimit.hashed(number))  # the right lock clears the guesses
        # Proving the number (and the lock) is not enough when the account has a
        # second factor. 441 rolls back everything above; an accepted code is spent with the commit.
        check_registration_totp(account=existing, code=totp)

    if existing is None:
        account = Account(aci=_aci_for_new_account(number), number=number, pni=pni)
    else:
        account = existing
        # Old devices take their keys (all four kinds, both identities) with them.
        Device.objects.filter(account=account).delete()
        disconnect_devices(aci=account.aci, device_ids=[device.device_id for device in old_devices])
    account.unidentified_access_key = attributes["unidentifiedAccessKey"]
    account.unrestricted_unidentified_access = attributes["unrestrictedUnidentifiedAccess"]
    account.discoverable_by_phone_number = attributes["discoverableByPhoneNumber"]
    apply_registration_lock(account=account, lock=attributes["registrationLock"])
    if existing is None:
        rows.insert(account)
    else:
        account.save(update_fields=ACCOUNT_ATTRIBUTE_FIELDS)
    if attributes["recoveryPassword"]:
        store_recovery_password(pni=account.pni, password=attributes["recoveryPassword"])

    credentials = SaltedTokenHash.generate(password)
    device = Device(
        account=account,
        device_id=PRIMARY_DEVICE_ID,
        auth_token_hash=credentials.hash,
        auth_salt=credentials.salt,
        registration_id=attributes["registrationId"],
        pni_registration_id=attributes["pniRegistrationId"],
        name=attributes["name"],
        fetches_messages=attributes["fetchesMessages"],
        capabilities=attributes["capabilities"],
        user_agent=user_agent.strip()[: Device._meta.get_field("user_agent").max_length],
        apn_id=apn_token or "",
        gcm_id=gcm_token or "",
        last_seen=timezone.now().date(),
    )
    rows.insert(device)
    set_identity_keys(account=account, aci_identity_key=aci_identity_key, pni_identity_key=pni_identity_key)
    store_repeated_use_keys(device=device, keys={Identity.ACI: aci_keys, Identity.PNI: pni_keys})
    return RegistrationResult(
        account=account,
        device=device,
        reregistration=existing is not None,
        storage_capable=any("storage" in old.capabilities for old in old_devices),
    )


def _locked_number(number: str) -> tuple[uuid.UUID, Account | None]:
    """The number's PNI and its account, if any, both rows locked `FOR NO KEY UPDATE`."""
    loader, pni_sql, account_sql = _number_statements()
    with bound_cursor() as cursor:
        cursor.execute(pni_sql, [number])
        (pni,) = cursor.fetchone()
        cursor.execute(account_sql, [number])
        row = cursor.fetchone()
    return as_uuid(pni), loader.load(row) if row is not None else None


@cache
def _number_statements() -> tuple[RowLoader, str, str]:
    loader, lock = RowLoader(Account), for_update(no_key=True)
    identifiers, accounts = PhoneNumberIdentifier._meta.db_table, Account._meta.db_table
    return (
        loader,
        f"SELECT pni FROM {identifiers} WHERE number = %s{lock}",
        f"SELECT {loader.columns('a')} FROM {accounts} a WHERE a.number = %s{lock}",
    )


def _aci_for_new_account(number: str) -> uuid.UUID:
    """The ACI of the number's account deleted within the last 30 days, else a fresh one. The
    record goes either way, in one statement that finds it."""
    with bound_cursor() as cursor:
        cursor.execute(f"DELETE FROM {DeletedAccount._meta.db_table} WHERE number = %s RETURNING aci, deleted_at", [number])
        deleted = cursor.fetchone()
    if deleted is None:
        return uuid.uuid4()
    aci, deleted_at = as_uuid(deleted[0]), deleted[1]
    if isinstance(deleted_at, str):  # SQLite
        deleted_at = date.fromisoformat(deleted_at)
    recent = deleted_at >= timezone.now().date() - timedelta(days=settings.DELETED_ACCOUNT_ACI_REUSE_DAYS)
    if recent and not Account.objects.filter(aci=aci).exists():
        return aci
    return uuid.uuid4()


def _registration_lock_time_remaining(account: Account, devices: list[Device]) -> timedelta | None:
    """How long the account's registration lock stays in force, or None when none is in force.

    Last seen is the most recent day any device was seen (a device never seen counts from the day it
    was created), taken as that day's midnight UTC; the lock lapses 7 days later.
    """
    if not account.has_registration_lock:
        return None
    days: list[date] = [device.last_seen or device.created for device in devices] or [account.created]
    last_seen = datetime.combine(max(days), time.min, tzinfo=UTC)
    remaining = last_seen + REGISTRATION_LOCK_LIFETIME - timezone.now()
    return remaining if remaining >= timedelta(0) else None


def _registration_lock_matches(account: Account, lock: str | None) -> bool:
    stored = SaltedTokenHash(account.registration_lock_hash, account.registration_lock_salt)
    return bool(lock) and stored.verify(lock)


def _lock_out(account: Account, devices: list[Device]) -> None:
    """Someone proved the number but not the lock: freeze the account until its owner returns.

    Locked credentials make the lock's timer run (the account is no longer seen), which is what
    eventually lets the number's verified owner take it over.
    """
    Device.objects.filter(account=account).exclude(auth_token_hash__startswith=LOCKED_PREFIX).update(
        auth_token_hash=Concat(Value(LOCKED_PREFIX), F("auth_token_hash"))
    )
    disconnect_devices(aci=account.aci, device_ids=[device.device_id for device in devices])
    RegistrationRecoveryPassword.objects.filter(pni=account.pni).delete()
    primary = next((device for device in devices if device.device_id == PRIMARY_DEVICE_ID), None)
    if primary is not None:
        # The owner's phone learns that someone tried to take the number.
        alert_attempted_login(device_pk=primary.pk, context=FAILED_REGISTRATION_LOCK)
