"""Two-factor authentication for an account (our extension, docs/api.md "What we add"; status 441):
enrolment, confirmation and removal of a TOTP secret (RFC 6238), single-use backup codes, and the
check that re-registering the number of an account with TOTP makes.

- Codes are 6 digits over 30-second steps (what every authenticator app does). A code of the
  current step or of one step either side is accepted, to forgive clock drift; once a code has been
  accepted, no code of that step or an earlier one is (RFC 6238 §5.2: each code works once).
- Backup codes are 10 digits without a leading zero (they survive the registration body's integer
  `totp` field); only their salted hashes are kept and each works once.
- The secret is kept encrypted (AES-256-GCM, key derived from SECRET_KEY with HKDF, the ACI as
  associated data so a ciphertext cannot be moved to another account). Rotating SECRET_KEY
  therefore makes enrolled secrets unreadable: re-enrolment is needed.
- Every check of a code (confirmation, removal, registration) spends a permit of the `checkTotp`
  limiter keyed by the ACI (bucket 5, one per 6 s) before the code is compared.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from dataclasses import dataclass

import pyotp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.db import transaction

from accounts.models import PRIMARY_DEVICE_ID, Account, Device, TotpEnrolment
from signalserver.crypto import server_key
from signalserver import ratelimit
from signalserver.auth import SaltedTokenHash
from signalserver.errors import Conflict, Forbidden, TotpRequired

ISSUER = "signalserver"
STEP_SECONDS = 30
CODE_DIGITS = 6
# Steps either side of the current one whose codes are still accepted (clock drift).
WINDOW_STEPS = 1
BACKUP_CODE_COUNT = 10
BACKUP_CODE_DIGITS = 10
NONCE_BYTES = 12


def _secret_key() -> bytes:
    return server_key("totp secret")


def _encrypt(secret: str, account: Account) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(_secret_key()).encrypt(nonce, secret.encode(), account.aci.bytes)


def _decrypt(blob: bytes, account: Account) -> str | None:
    """The secret, or None when it cannot be read (SECRET_KEY rotated, row tampered with)."""
    blob = bytes(blob)
    try:
        plain = AESGCM(_secret_key()).decrypt(
            blob[:NONCE_BYTES], blob[NONCE_BYTES:], account.aci.bytes
        )
    except (InvalidTag, ValueError):
        return None
    return plain.decode()


def check_totp_rate_limit(account: Account) -> None:
    """Spend one `checkTotp` permit of the account (bucket 5, one per 6 s, keyed by ACI),
    raising RateLimited (429) when none is left."""
    ratelimit.check("checkTotp", str(account.aci), aci=account.aci)


@dataclass(frozen=True, slots=True)
class TotpEnrolmentStarted:
    secret: str  # base32, for manual entry
    uri: str  # otpauth://totp/…, for a QR code


def _require_primary(device: Device) -> None:
    if device.device_id != PRIMARY_DEVICE_ID:
        raise Forbidden("only the primary device manages two-factor authentication")


def _now(now: float | None) -> float:
    return time.time() if now is None else now


@transaction.atomic
def start_totp_enrolment(*, account: Account, device: Device) -> TotpEnrolmentStarted:
    """`POST /v1/accounts/totp`: a new secret, pending until a code from it confirms it."""
    _require_primary(device)
    enrolment = TotpEnrolment.objects.select_for_update(no_key=True).filter(account=account).first()
    if enrolment is not None and enrolment.confirmed:
        raise Conflict("two-factor authentication is already enrolled; remove it first")
    secret = pyotp.random_base32()  # 160 bits, as RFC 4226 recommends
    TotpEnrolment.objects.update_or_create(
        account=account,
        defaults={
            "encrypted_secret": _encrypt(secret, account),
            "confirmed": False,
            "last_used_step": 0,
            "backup_codes": [],
        },
    )
    # A neutral label: an authenticator app shows it, and the phone number has no business there.
    label = f"account {str(account.aci)[:8]}"
    totp = pyotp.TOTP(secret, digits=CODE_DIGITS, interval=STEP_SECONDS)
    uri = totp.provisioning_uri(name=label, issuer_name=ISSUER)
    return TotpEnrolmentStarted(secret=secret, uri=uri)


@transaction.atomic
def confirm_totp_enrolment(*, account: Account, device: Device, code: str, now: float | None = None) -> list[str]:
    """`PUT /v1/accounts/totp`: a current code confirms the pending secret; returns the backup codes
    (shown this once: only their hashes are kept)."""
    _require_primary(device)
    enrolment = TotpEnrolment.objects.select_for_update(no_key=True).filter(account=account).first()
    if enrolment is None or enrolment.confirmed:
        raise Conflict("no two-factor enrolment is waiting for confirmation")
    check_totp_rate_limit(account)
    if len(code) != CODE_DIGITS or not _accept_totp_code(enrolment, account, code, _now(now)):
        raise Forbidden("wrong code")
    backup_codes = [_new_backup_code() for _ in range(BACKUP_CODE_COUNT)]
    enrolment.backup_codes = [[hashed.hash, hashed.salt] for hashed in map(SaltedTokenHash.generate, backup_codes)]
    enrolment.confirmed = True
    enrolment.save(update_fields=["backup_codes", "confirmed", "last_used_step"])
    return backup_codes


@transaction.atomic
def remove_totp(*, account: Account, device: Device, code: str | None, now: float | None = None) -> None:
    """`DELETE /v1/accounts/totp`: a confirmed second factor goes only with one of its codes (a
    current code or a backup code), so stolen device credentials alone cannot strip it; a pending
    enrolment goes without one. Nothing enrolled: nothing to do."""
    _require_primary(device)
    enrolment = TotpEnrolment.objects.select_for_update(no_key=True).filter(account=account).first()
    if enrolment is None:
        return
    if enrolment.confirmed:
        if code is None:
            raise Forbidden("a current code or a backup code is required")
        check_totp_rate_limit(account)
        if not _accept_code(enrolment, account, code, _now(now)):
            raise Forbidden("wrong code")
    enrolment.delete()


def check_registration_totp(*, account: Account, code: str | None, now: float | None = None) -> None:
    """Re-registering the number of an account with confirmed TOTP needs one of
    its codes (or a backup code); TotpRequired (441) otherwise. Runs inside the registration's
    transaction, with the account row locked: an accepted code is spent only if the registration
    commits."""
    enrolment = TotpEnrolment.objects.select_for_update(no_key=True).filter(account=account, confirmed=True).first()
    if enrolment is None:
        return
    if code is None:
        raise TotpRequired()
    # A Redis round trip inside the transaction, accepted on purpose: it happens only for accounts
    # with TOTP, and the guess must be paid for before it is compared.
    check_totp_rate_limit(account)
    if not _accept_code(enrolment, account, code, _now(now)):
        raise TotpRequired("wrong or already used code")


def _accept_code(enrolment: TotpEnrolment, account: Account, code: str, now: float) -> bool:
    """A current TOTP code or an unused backup code; spends it (saved) when it matches."""
    if len(code) == CODE_DIGITS:
        if not _accept_totp_code(enrolment, account, code, now):
            return False
        enrolment.save(update_fields=["last_used_step"])
        return True
    if len(code) == BACKUP_CODE_DIGITS:
        for index, (hashed, salt) in enumerate(enrolment.backup_codes):
            if SaltedTokenHash(hashed, salt).verify(code):
                del enrolment.backup_codes[index]
                enrolment.save(update_fields=["backup_codes"])
                return True
    return False


def _accept_totp_code(enrolment: TotpEnrolment, account: Account, code: str, now: float) -> bool:
    """Whether `code` is the code of a step in the window newer than the last step accepted; when it
    is, that step becomes the last accepted (the caller saves `last_used_step`)."""
    secret = _decrypt(enrolment.encrypted_secret, account)
    if secret is None:
        return False
    totp = pyotp.TOTP(secret, digits=CODE_DIGITS, interval=STEP_SECONDS)
    current = int(now // STEP_SECONDS)
    for step in range(current - WINDOW_STEPS, current + WINDOW_STEPS + 1):
        if step > enrolment.last_used_step and hmac.compare_digest(totp.generate_otp(step), code):
            enrolment.last_used_step = step
            return True
    return False


def _new_backup_code() -> str:
    low = 10 ** (BACKUP_CODE_DIGITS - 1)
    return str(low + secrets.randbelow(9 * low))
