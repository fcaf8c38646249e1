"""Signal's JSON shapes for accounts: shape checks only."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from signalserver.fields import Base64Field
from signalserver.wire import b64encode_url

KNOWN_CAPABILITIES = (
    "storage",
    "transfer",
    "attachmentBackfill",
    "spqr",
    "profiles_v2",
    "usernameChangeSyncMessage",
    "optionalPhoneNumber",
)
REGISTRATION_ID_MAX = 0x3FFF
DEVICE_NAME_MAX_BYTES = 225


@extend_schema_field({"type": "object", "additionalProperties": {"type": "boolean"}})
class CapabilitiesField(serializers.Field):
    """`{name: bool}` → the sorted list of known names that are true; unknown names are ignored."""

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError("must be an object")
        return sorted(name for name in KNOWN_CAPABILITIES if data.get(name) is True)

    def to_representation(self, value):
        return {name: True for name in value}


class AccountAttributesSerializer(serializers.Serializer):
    fetchesMessages = serializers.BooleanField(required=False, default=False)
    registrationId = serializers.IntegerField(min_value=1, max_value=REGISTRATION_ID_MAX)
    pniRegistrationId = serializers.IntegerField(
        min_value=1, max_value=REGISTRATION_ID_MAX, required=False, allow_null=True, default=None
    )
    name = Base64Field(max_length=DEVICE_NAME_MAX_BYTES, required=False, allow_null=True, default=None)
    capabilities = CapabilitiesField(required=False, default=list)
    registrationLock = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, default=None, max_length=64
    )
    unidentifiedAccessKey = Base64Field(length=16, required=False, allow_null=True, default=None)
    unrestrictedUnidentifiedAccess = serializers.BooleanField(required=False, default=False)
    discoverableByPhoneNumber = serializers.BooleanField(required=False, default=True)
    recoveryPassword = Base64Field(length=32, required=False, allow_null=True, allow_empty=True, default=None)

    def validate_registrationLock(self, value):
        if value and len(value) != 64:
            raise serializers.ValidationError("must be empty or 64 characters")
        return value or None

    def validate_recoveryPassword(self, value):
        return value or None

    def validate(self, attrs):
        if attrs["unidentifiedAccessKey"] is None and not attrs["unrestrictedUnidentifiedAccess"]:
            raise serializers.ValidationError(
                {"unidentifiedAccessKey": "is required unless unrestrictedUnidentifiedAccess is true"}
            )
        return attrs


class EntitlementsSerializer(serializers.Serializer):
    badges = serializers.ListField(child=serializers.DictField())
    backup = serializers.DictField(allow_null=True)


class AccountIdentitySerializer(serializers.Serializer):
    """Response of `GET /v1/accounts/whoami` (and of registration, with `reregistration`)."""

    uuid = serializers.UUIDField()
    number = serializers.CharField(allow_null=True)
    pni = serializers.UUIDField(allow_null=True)
    usernameHash = serializers.CharField(allow_null=True)
    usernameLinkHandle = serializers.UUIDField(allow_null=True)
    storageCapable = serializers.BooleanField()
    entitlements = EntitlementsSerializer()
    authCredentialSalt = serializers.CharField(allow_null=True)


def account_identity(account, *, storage_capable: bool, new_account: bool = False) -> dict:
    """The account identity object of Signal's API. `new_account`: created by this request, so it
    has no username and no link (a deleted account's go with its row), and neither is looked up."""
    from accounts.usernames import services as usernames

    username_hash, handle = None, None
    if not new_account:
        username_hash, handle = usernames.confirmed_hash(account), usernames.link_handle(account)
    return {
        "uuid": str(account.aci),
        "number": account.number,
        "pni": str(account.pni) if account.pni else None,
        "usernameHash": b64encode_url(username_hash, padded=False) if username_hash else None,
        "usernameLinkHandle": str(handle) if handle else None,
        "storageCapable": storage_capable,
        "entitlements": {"badges": [], "backup": None},
        "authCredentialSalt": None,
    }
