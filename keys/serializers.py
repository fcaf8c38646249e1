"""Signal's JSON shapes for keys: shape checks only; signatures are checked by
`keys.services.verify_signed_prekeys` against the identity key they belong to."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from keys.models import EC_KEY_LENGTH, KEM_KEY_LENGTH, SIGNATURE_LENGTH
from keys.services import MAX_KEYS_PER_UPLOAD, PreKeyData, SignedPreKeyData, is_ec_public_key, is_kem_public_key
from signalserver.fields import Base64Field
from signalserver.wire import b64encode_unpadded

MAX_KEY_ID = 2**31 - 1  # what Signal validates; clients use ids below 2^24


def _bytes_schema(description: str) -> dict:
    return {"type": "string", "format": "byte", "description": description}


@extend_schema_field(_bytes_schema("standard base64 of a 33-byte Curve25519 key (type byte 0x05)"))
class ECPublicKeyField(Base64Field):
    """A Curve25519 public key: 33 bytes, type byte 0x05 (identity keys and EC prekeys)."""

    default_error_messages = {"type": "must be a 33-byte key of type 0x05"}

    def __init__(self, **kwargs):
        super().__init__(length=EC_KEY_LENGTH, **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not is_ec_public_key(value):
            self.fail("type")
        return value


@extend_schema_field(_bytes_schema("standard base64 of a 1569-byte Kyber1024 key (type byte 0x08)"))
class KEMPublicKeyField(Base64Field):
    """A Kyber1024 public key: 1569 bytes, type byte 0x08."""

    default_error_messages = {"type": "must be a 1569-byte key of type 0x08"}

    def __init__(self, **kwargs):
        super().__init__(length=KEM_KEY_LENGTH, **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not is_kem_public_key(value):
            self.fail("type")
        return value


@extend_schema_field(_bytes_schema("standard base64 (unpadded) of a 64-byte XEdDSA signature"))
class SignatureField(Base64Field):
    """A 64-byte XEdDSA signature; Signal emits it in standard base64 without padding."""

    def __init__(self, **kwargs):
        super().__init__(length=SIGNATURE_LENGTH, **kwargs)

    def to_representation(self, value):
        return b64encode_unpadded(bytes(value))


def _key_id_field():
    return serializers.IntegerField(source="key_id", min_value=0, max_value=MAX_KEY_ID)


class _SignedPreKeySerializer(serializers.Serializer):
    """Validates into a `SignedPreKeyData`; renders a model row or a `SignedPreKeyData`."""

    def validate(self, attrs):
        return SignedPreKeyData(**attrs)


class ECSignedPreKeySerializer(_SignedPreKeySerializer):
    """`ECSignedPreKey`: `{keyId, publicKey (33 bytes), signature (64 bytes)}`."""

    keyId = _key_id_field()
    publicKey = ECPublicKeyField(source="public_key")
    signature = SignatureField()


class KEMSignedPreKeySerializer(_SignedPreKeySerializer):
    """`KEMSignedPreKey` (one-time or last-resort): `{keyId, publicKey (1569 bytes), signature}`."""

    keyId = _key_id_field()
    publicKey = KEMPublicKeyField(source="public_key")
    signature = SignatureField()


class ECPreKeySerializer(serializers.Serializer):
    """`ECPreKey` (one-time): `{keyId, publicKey (33 bytes)}`."""

    keyId = _key_id_field()
    publicKey = ECPublicKeyField(source="public_key")

    def validate(self, attrs):
        return PreKeyData(**attrs)


def _key_list(child: serializers.Serializer, source: str) -> serializers.ListSerializer:
    """An optional list of keys: the list may be null, an entry may not. (`many=True` would hand
    `allow_null` to every entry as well, and a null entry would reach the service.)"""
    return serializers.ListSerializer(
        child=child, required=False, allow_null=True, default=None, source=source, max_length=MAX_KEYS_PER_UPLOAD
    )


class SetKeysSerializer(serializers.Serializer):
    """Body of `PUT /v2/keys`; every part optional."""

    preKeys = _key_list(ECPreKeySerializer(), "pre_keys")
    signedPreKey = ECSignedPreKeySerializer(required=False, allow_null=True, default=None, source="signed_prekey")
    pqPreKeys = _key_list(KEMSignedPreKeySerializer(), "pq_pre_keys")
    pqLastResortPreKey = KEMSignedPreKeySerializer(required=False, allow_null=True, default=None, source="pq_last_resort_prekey")


class KeyCountSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    pqCount = serializers.IntegerField()


class CheckKeysSerializer(serializers.Serializer):
    identityType = serializers.ChoiceField(choices=["aci", "pni"], required=False, default="aci")
    digest = Base64Field(length=32)


class PreKeyResponseSerializer(serializers.Serializer):
    keyId = serializers.IntegerField(source="key_id")
    publicKey = Base64Field(source="public_key")


class SignedPreKeyResponseSerializer(PreKeyResponseSerializer):
    signature = SignatureField()


class DeviceBundleSerializer(serializers.Serializer):
    deviceId = serializers.IntegerField(source="device_id")
    registrationId = serializers.IntegerField(source="registration_id")
    signedPreKey = SignedPreKeyResponseSerializer(source="signed_prekey")
    preKey = PreKeyResponseSerializer(source="pre_key", allow_null=True)
    pqPreKey = SignedPreKeyResponseSerializer(source="pq_pre_key")


class PreKeyBundleSerializer(serializers.Serializer):
    identityKey = Base64Field(source="identity_key")
    devices = DeviceBundleSerializer(many=True)
