"""Accounts, their devices, phone-number identifiers and verification sessions."""

import uuid

from django.db import models

MAX_DEVICE_ID = 127
PRIMARY_DEVICE_ID = 1
MAX_DEVICES = 6  # per account, the primary included


class PhoneNumberIdentifier(models.Model):
    """The PNI belongs to the number, not the account: assigned once per number, kept forever."""

    number = models.CharField(max_length=20, unique=True)
    pni = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)

    class Meta:
        verbose_name = "phone number identifier"

    def __str__(self):
        return f"PNI:{self.pni}"


class Account(models.Model):
    aci = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    number = models.CharField(max_length=20, unique=True, null=True, blank=True)
    pni = models.UUIDField(unique=True, null=True, blank=True, editable=False)
    unidentified_access_key = models.BinaryField(max_length=16, null=True, blank=True)
    unrestricted_unidentified_access = models.BooleanField(default=False)
    discoverable_by_phone_number = models.BooleanField(default=True)
    # SaltedTokenHash of the 64-hex-character registration lock; empty when no lock is set.
    registration_lock_hash = models.CharField(max_length=80, blank=True, default="")
    registration_lock_salt = models.CharField(max_length=32, blank=True, default="")
    # Set by an operator (admin): every request of its devices is refused, its sockets closed.
    banned = models.BooleanField(default=False)
    # Whether the account blocks anyone (accounts.blocks): sends to the many that do not skip the check.
    blocks_someone = models.BooleanField(default=False)
    created = models.DateField(auto_now_add=True)

    class Meta:
        permissions = [("ban_account", "Can ban and unban accounts and reset their rate limits")]

    def __str__(self):
        return str(self.aci)

    @property
    def has_registration_lock(self) -> bool:
        return bool(self.registration_lock_hash)


class Device(models.Model):
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="devices")
    device_id = models.PositiveSmallIntegerField()
    auth_token_hash = models.CharField(max_length=80)
    auth_salt = models.CharField(max_length=32)
    registration_id = models.PositiveSmallIntegerField()
    pni_registration_id = models.PositiveSmallIntegerField(null=True, blank=True)
    name = models.BinaryField(max_length=225, null=True, blank=True)  # encrypted by the client
    fetches_messages = models.BooleanField(default=False)
    capabilities = models.JSONField(default=list, blank=True)  # names of the true capabilities
    user_agent = models.CharField(max_length=64, blank=True, default="")  # X-Signal-Agent
    apn_id = models.CharField(max_length=255, blank=True, default="")
    gcm_id = models.CharField(max_length=255, blank=True, default="")
    # The hour the current push token was set (rounded down): an "unregistered" report from the
    # push service clears the token only if it was set before. Within that hour a token
    # set again after the report is cleared too; the client sets it again.
    push_token_set_at = models.DateTimeField(null=True, blank=True)
    # Day granularity on purpose (privacy, docs/privacy.md).
    created = models.DateField(auto_now_add=True)
    last_seen = models.DateField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "device_id"], name="device_unique_per_account"),
            models.CheckConstraint(
                condition=models.Q(device_id__gte=1, device_id__lte=MAX_DEVICE_ID), name="device_id_range"
            ),
        ]

    def __str__(self):
        return f"{self.account_id}.{self.device_id}"

    @property
    def is_primary(self) -> bool:
        return self.device_id == PRIMARY_DEVICE_ID


class RegistrationRecoveryPassword(models.Model):
    """A 32-byte secret letting the owner of a number re-register without SMS; kept per PNI."""

    pni = models.UUIDField(primary_key=True)
    password_hash = models.CharField(max_length=80)
    salt = models.CharField(max_length=32)
    created = models.DateField(auto_now=True)  # the day it was set (privacy: not the registration's time)


class DeletedAccount(models.Model):
    """Remembers a deleted account's ACI for a while so re-registering the number gets it back."""

    number = models.CharField(max_length=20, primary_key=True)
    aci = models.UUIDField()
    deleted_at = models.DateField()  # the day: the reuse window is counted in days


class VerificationSession(models.Model):
    """Proof of control of a phone number in progress; expires after inactivity."""

    id = models.BinaryField(primary_key=True, max_length=16)
    number = models.CharField(max_length=20)
    requested_information = models.JSONField(default=list)  # ordered: "pushChallenge", "captcha"
    push_challenge = models.CharField(max_length=32, blank=True, default="")
    push_challenge_solved = models.BooleanField(default=False)
    allowed_to_request_code = models.BooleanField(default=False)
    verified = models.BooleanField(default=False)
    # HMAC of the code sent last (never the code itself), and when it stops being accepted.
    code_hash = models.CharField(max_length=64, blank=True, default="")
    code_expires_at = models.DateTimeField(null=True, blank=True)
    sms_sent = models.PositiveSmallIntegerField(default=0)
    calls_made = models.PositiveSmallIntegerField(default=0)
    last_sms_at = models.DateTimeField(null=True, blank=True)
    last_call_at = models.DateTimeField(null=True, blank=True)
    failed_attempts = models.PositiveSmallIntegerField(default=0)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sender_refused = models.BooleanField(default=False)  # provider refused permanently
    # Why it refused (a 440 reason), repeated to later code requests in the session.
    sender_refusal_reason = models.CharField(max_length=24, blank=True, default="")
    # The exact times above serve the waits while the session lives; it is deleted once expired.
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [models.Index(fields=["number"])]


class UsedLinkToken(models.Model):
    """A device-link token that was spent: each works once. Kept until it expires."""

    identifier = models.CharField(max_length=64, primary_key=True)  # b64url(SHA-256(token))
    expires_at = models.DateTimeField(db_index=True)  # rounded up to the hour: not the time of linking
    # The device linked with it, for `wait_for_linked_device`.
    device = models.ForeignKey(Device, on_delete=models.CASCADE, null=True, blank=True, related_name="+")


class TokenFamily(models.Model):
    """The bearer tokens descended from one login (`POST /v1/auth/token`) of one device.

    Reusing a spent refresh token revokes the whole family: whoever holds the stolen copy and the
    device itself both have to log in again with the device's credentials.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="token_families")
    # The device's credentials when the family began: a password change ends the family.
    credential_fingerprint = models.CharField(max_length=16)
    revoked = models.BooleanField(default=False)
    # The device's logins counted (1, 2, ...): beyond the limit the oldest go. A count, not a time.
    serial = models.PositiveIntegerField(default=0)
    # When its newest refresh token expires (rounded up to the day, as the tokens' own expiry);
    # every token of the family is useless after that.
    expires_at = models.DateTimeField(db_index=True)


class RefreshToken(models.Model):
    """One refresh token (only its SHA-256 is kept); spent once it has been exchanged."""

    token_hash = models.BinaryField(max_length=32, primary_key=True)
    family = models.ForeignKey(TokenFamily, on_delete=models.CASCADE, related_name="refresh_tokens")
    spent = models.BooleanField(default=False)
    expires_at = models.DateTimeField(db_index=True)  # rounded up to the day: not the time it was issued


class TotpEnrolment(models.Model):
    """An account's second factor (RFC 6238). The secret is encrypted at rest; backup codes are
    kept as salted hashes and work once."""

    account = models.OneToOneField(Account, on_delete=models.CASCADE, related_name="totp", primary_key=True)
    encrypted_secret = models.BinaryField(max_length=128)
    confirmed = models.BooleanField(default=False)
    last_used_step = models.BigIntegerField(default=0)  # replay protection: each code works once
    backup_codes = models.JSONField(default=list)  # [[hash, salt], ...]
    created = models.DateField(auto_now_add=True)  # the day


class RateLimitPushChallenge(models.Model):
    """The push challenge last sent to the account's primary: answered once, within
    five minutes, with `PUT /v1/challenge`."""

    account = models.OneToOneField(Account, on_delete=models.CASCADE, primary_key=True, related_name="+")
    challenge = models.CharField(max_length=32)  # 16 random bytes, hex
    expires_at = models.DateTimeField()


class Profile(models.Model):
    """One version of an account's encrypted profile. Every field is ciphertext under
    the profile key, which only the account's contacts hold; `version` is derived from that key by
    the client. The account's current version is the one with `replaced` null; the one it replaced
    is kept for a grace period (contacts still on the old key can read it), older ones are gone."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="profiles")
    version = models.CharField(max_length=64)  # hex
    commitment = models.BinaryField(max_length=97)  # zkgroup ProfileKeyCommitment, stored opaque
    name = models.BinaryField(max_length=285)
    about = models.BinaryField(max_length=540, null=True, blank=True)
    about_emoji = models.BinaryField(max_length=60, null=True, blank=True)
    payment_address = models.BinaryField(max_length=582, null=True, blank=True)
    phone_number_sharing = models.BinaryField(max_length=29, null=True, blank=True)
    avatar = models.CharField(max_length=64, blank=True, default="")  # object key, "profiles/…"
    replaced = models.DateField(null=True, blank=True)  # to the day: when another version became current

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "version"], name="profile_version_unique"),
            models.UniqueConstraint(fields=["account"], condition=models.Q(replaced__isnull=True), name="one_current_profile"),
        ]

    def __str__(self) -> str:
        return "profile version"


class UsernameClaim(models.Model):
    """A username hash (the server never sees the username) as one account holds it:
    confirmed (the account's username), reserved (for 5 minutes, on the way to being confirmed) or
    held (for 7 days after the account gave it up, so nobody else takes it at once). One row per
    hash, whatever its state: the unique index is what makes two accounts' concurrent claims of
    one hash end with exactly one winner."""

    CONFIRMED, RESERVED, HELD = "confirmed", "reserved", "held"

    hash = models.BinaryField(max_length=32, unique=True)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="username_claims")
    kind = models.CharField(max_length=9, choices=[(CONFIRMED, CONFIRMED), (RESERVED, RESERVED), (HELD, HELD)])
    # Reserved claims: exact (5 minutes), purged once past. Held: rounded up to the day.
    expires = models.DateTimeField(null=True, blank=True)
    zk_proof = models.BinaryField(max_length=1024, null=True, blank=True)  # stored opaque (no libsignal)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account"], condition=models.Q(kind="confirmed"), name="one_username_per_account"),
        ]
        indexes = [models.Index(fields=["account", "kind"]), models.Index(fields=["expires"])]

    def __str__(self) -> str:
        return f"{self.kind} username hash"


class UsernameLink(models.Model):
    """An account's username link: the username encrypted by the client, found by a
    random handle that the account shares as a link or QR code."""

    account = models.OneToOneField(Account, on_delete=models.CASCADE, related_name="username_link")
    handle = models.UUIDField(unique=True, default=uuid.uuid4)
    encrypted_value = models.BinaryField(max_length=128)

    def __str__(self) -> str:
        return "username link"


class Block(models.Model):
    """An account blocks a service id (an ACI, or a PNI): identified messages from it are dropped,
    and it cannot read the account's prekeys or profile with its credentials."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="blocks")
    blocked = models.UUIDField()
    blocked_is_pni = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "blocked"], name="block_unique")]

    def __str__(self) -> str:
        return "block"
