"""Signal's JSON shapes for profiles: shape and ciphertext lengths only.

Each field is ciphertext of a padded plaintext (AES-GCM: 12-byte nonce and 16-byte tag added), so
only a few lengths are possible; anything else is not a profile a Signal client wrote."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from signalserver.fields import Base64Field

VERSION_HEX_LENGTH = 64
# zkgroup's ProfileKeyCommitment: a version byte and three Ristretto points. We cannot parse it
# without zkgroup, so only its length is checked; it is stored opaque.
COMMITMENT_BYTES = 97
NAME_LENGTHS = (81, 285)
ABOUT_LENGTHS = (0, 156, 282, 540)
ABOUT_EMOJI_LENGTHS = (0, 60)
PAYMENT_ADDRESS_LENGTHS = (0, 582)
PHONE_NUMBER_SHARING_LENGTHS = (0, 29)
MAX_BADGES = 100


@extend_schema_field({"type": "string", "format": "byte", "nullable": True})
class CiphertextField(Base64Field):
    """Base64 ciphertext of one of `lengths` bytes (0 allowed only when listed)."""

    def __init__(self, lengths: tuple[int, ...], **kwargs):
        self.lengths = lengths
        super().__init__(max_length=max(lengths), allow_empty=0 in lengths, **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if len(value) not in self.lengths:
            raise serializers.ValidationError(f"must be {' or '.join(map(str, self.lengths))} bytes")
        return value


class SetProfileSerializer(serializers.Serializer):
    version = serializers.RegexField(r"^[0-9a-fA-F]{64}$", max_length=VERSION_HEX_LENGTH)
    commitment = Base64Field(length=COMMITMENT_BYTES)
    name = CiphertextField(NAME_LENGTHS)
    about = CiphertextField(ABOUT_LENGTHS, required=False, allow_null=True, default=None)
    aboutEmoji = CiphertextField(ABOUT_EMOJI_LENGTHS, required=False, allow_null=True, default=None)
    paymentAddress = CiphertextField(PAYMENT_ADDRESS_LENGTHS, required=False, allow_null=True, default=None)
    phoneNumberSharing = CiphertextField(PHONE_NUMBER_SHARING_LENGTHS, required=False, allow_null=True, default=None)
    avatar = serializers.BooleanField(required=False, default=False)
    sameAvatar = serializers.BooleanField(required=False, default=False)
    badgeIds = serializers.ListField(child=serializers.CharField(max_length=255), max_length=MAX_BADGES, required=False)


class AvatarFormSerializer(serializers.Serializer):
    """The avatar upload form."""

    key = serializers.CharField()
    credential = serializers.CharField()
    acl = serializers.CharField()
    algorithm = serializers.CharField()
    date = serializers.CharField()
    policy = serializers.CharField()
    signature = serializers.CharField()


class ProfileSerializer(serializers.Serializer):
    identityKey = Base64Field(allow_null=True)
    unidentifiedAccess = Base64Field(allow_null=True)
    unrestrictedUnidentifiedAccess = serializers.BooleanField()
    capabilities = serializers.DictField(child=serializers.BooleanField())
    badges = serializers.ListField(child=serializers.DictField())
    uuid = serializers.CharField()


class VersionedProfileSerializer(ProfileSerializer):
    name = Base64Field(allow_null=True)
    about = Base64Field(allow_null=True)
    aboutEmoji = Base64Field(allow_null=True)
    avatar = serializers.CharField(allow_null=True)
    paymentAddress = Base64Field(allow_null=True)
    phoneNumberSharing = Base64Field(allow_null=True)


class IdentityCheckElementSerializer(serializers.Serializer):
    uuid = serializers.CharField(max_length=64)
    fingerprint = Base64Field(length=4)


class IdentityCheckSerializer(serializers.Serializer):
    elements = serializers.ListField(child=IdentityCheckElementSerializer(), max_length=1000)
