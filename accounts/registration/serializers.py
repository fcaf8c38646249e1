"""Signal's JSON shapes for `POST /v1/registration`: shape and combination checks only.

Field `source`s are the keyword arguments of `accounts.registration.services.register_account`, so the
validated data can be passed on as it is.
"""

from rest_framework import serializers

from accounts.serializers import AccountAttributesSerializer, AccountIdentitySerializer
from accounts.totp.serializers import OneTimeCodeField
from keys.serializers import ECPublicKeyField, ECSignedPreKeySerializer, KEMSignedPreKeySerializer
from signalserver.fields import Base64Field

PUSH_TOKEN_MAX_LENGTH = 255  # Device.apn_id / gcm_id
SESSION_ID_MAX_LENGTH = 256
RECEIPT_CREDENTIAL_MAX_BYTES = 4096
PROOFS = ("session_id", "recovery_password", "receipt_credential_presentation")


class ApnTokenSerializer(serializers.Serializer):
    """`{"apnRegistrationId": "<token>"}`; validates into the token string."""

    apnRegistrationId = serializers.CharField(max_length=PUSH_TOKEN_MAX_LENGTH)

    def validate(self, attrs):
        return attrs["apnRegistrationId"]


class GcmTokenSerializer(serializers.Serializer):
    """`{"gcmRegistrationId": "<token>"}`; validates into the token string."""

    gcmRegistrationId = serializers.CharField(max_length=PUSH_TOKEN_MAX_LENGTH)

    def validate(self, attrs):
        return attrs["gcmRegistrationId"]


def _optional(field_class, **kwargs):
    return field_class(required=False, allow_null=True, default=None, **kwargs)


class RegistrationSerializer(serializers.Serializer):
    """Body of `POST /v1/registration`: one proof of the number, the account attributes and the new
    primary device's identity keys, signed prekeys and push token."""

    sessionId = _optional(
        serializers.CharField, source="session_id", allow_blank=True, max_length=SESSION_ID_MAX_LENGTH
    )
    recoveryPassword = _optional(Base64Field, source="recovery_password", length=32, allow_empty=True)
    receiptCredentialPresentation = _optional(
        Base64Field,
        source="receipt_credential_presentation",
        max_length=RECEIPT_CREDENTIAL_MAX_BYTES,
        allow_empty=True,
    )
    accountAttributes = AccountAttributesSerializer(source="account_attributes")
    skipDeviceTransfer = serializers.BooleanField(source="skip_device_transfer", required=False, default=False)
    aciIdentityKey = ECPublicKeyField(source="aci_identity_key")
    pniIdentityKey = _optional(ECPublicKeyField, source="pni_identity_key")
    aciSignedPreKey = ECSignedPreKeySerializer(source="aci_signed_prekey")
    pniSignedPreKey = _optional(ECSignedPreKeySerializer, source="pni_signed_prekey")
    aciPqLastResortPreKey = KEMSignedPreKeySerializer(source="aci_pq_last_resort_prekey")
    pniPqLastResortPreKey = _optional(KEMSignedPreKeySerializer, source="pni_pq_last_resort_prekey")
    apnToken = _optional(ApnTokenSerializer, source="apn_token")
    gcmToken = _optional(GcmTokenSerializer, source="gcm_token")
    # A one-time password (or backup code) when the number's account has TOTP (441).
    totp = _optional(OneTimeCodeField)

    def validate(self, attrs):
        # An empty proof counts as absent (Signal checks for non-empty values).
        for proof in PROOFS:
            attrs[proof] = attrs[proof] or None
        if sum(attrs[proof] is not None for proof in PROOFS) != 1:
            raise serializers.ValidationError(
                "exactly one of sessionId, recoveryPassword and receiptCredentialPresentation is required"
            )

        tokens = [token for token in (attrs["apn_token"], attrs["gcm_token"]) if token is not None]
        if attrs["account_attributes"]["fetchesMessages"]:
            if tokens:
                raise serializers.ValidationError("no push token may be given when fetchesMessages is true")
        elif len(tokens) != 1:
            raise serializers.ValidationError("exactly one of apnToken and gcmToken is required")

        pni_material = (
            attrs["pni_identity_key"],
            attrs["account_attributes"]["pniRegistrationId"],
            attrs["pni_signed_prekey"],
            attrs["pni_pq_last_resort_prekey"],
        )
        if any(item is None for item in pni_material) and any(item is not None for item in pni_material):
            raise serializers.ValidationError(
                "pniIdentityKey, accountAttributes.pniRegistrationId, pniSignedPreKey and pniPqLastResortPreKey "
                "must be given all together or not at all"
            )
        return attrs


class RegistrationResponseSerializer(AccountIdentitySerializer):
    reregistration = serializers.BooleanField(help_text="true when an account already existed for this number")


class RegistrationLockFailureSerializer(serializers.Serializer):
    """Body of the 423 answer: the registration lock is in force."""

    timeRemaining = serializers.IntegerField(help_text="milliseconds until the lock lapses by itself")
    svr2Credentials = serializers.DictField(allow_null=True, help_text="always null: no Secure Value Recovery")
