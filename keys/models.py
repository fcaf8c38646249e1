"""Public keys for X3DH/PQXDH, libsignal-serialized.

Repeated-use and one-time keys hang off the device and carry which identity (ACI or PNI) they
belong to, so removing a device removes its keys and a PNI-addressed fetch needs no special case.
"""

from django.db import models

EC_KEY_LENGTH = 33  # 0x05 || 32-byte Montgomery u
EC_KEY_TYPE = 0x05
KEM_KEY_LENGTH = 1569  # 0x08 || 1568-byte Kyber1024 key
KEM_KEY_TYPE = 0x08
SIGNATURE_LENGTH = 64


class Identity(models.IntegerChoices):
    ACI = 0, "aci"
    PNI = 1, "pni"


class IdentityKey(models.Model):
    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="identity_keys")
    identity = models.PositiveSmallIntegerField(choices=Identity.choices)
    public_key = models.BinaryField(max_length=EC_KEY_LENGTH)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "identity"], name="one_identity_key_per_identity")
        ]


class DeviceKey(models.Model):
    device = models.ForeignKey("accounts.Device", on_delete=models.CASCADE, related_name="+")
    identity = models.PositiveSmallIntegerField(choices=Identity.choices)
    key_id = models.BigIntegerField()
    public_key = models.BinaryField()

    class Meta:
        abstract = True


class SignedPreKey(DeviceKey):
    """The current signed EC prekey of a device and identity (repeated use)."""

    signature = models.BinaryField(max_length=SIGNATURE_LENGTH)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["device", "identity"], name="one_signed_prekey_per_identity")
        ]


class LastResortKey(DeviceKey):
    """The current Kyber last-resort prekey: handed out when the one-time pool is empty, never taken."""

    signature = models.BinaryField(max_length=SIGNATURE_LENGTH)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["device", "identity"], name="one_last_resort_key_per_identity")
        ]


class OneTimePreKey(DeviceKey):
    """An EC one-time prekey: handed out once, then gone."""

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["device", "identity", "key_id"], name="unique_one_time_prekey")
        ]


class KemPreKey(DeviceKey):
    """A signed Kyber one-time prekey: handed out once, then gone."""

    signature = models.BinaryField(max_length=SIGNATURE_LENGTH)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["device", "identity", "key_id"], name="unique_kem_prekey")]
