"""Signal's JSON shapes for verification sessions: shape checks only.

Unknown properties are ignored and `null` means absent, as in Signal's JSON layer; enum values
match case-insensitively.
"""

from rest_framework import serializers

from accounts.verification.senders import SMS, VOICE
from accounts.verification.services import CAPTCHA, PUSH_CHALLENGE, PUSH_TOKEN_TYPES
from signalserver.errors import SenderRejected
from signalserver.fields import CaseInsensitiveChoiceField
from signalserver.schema import ErrorSerializer  # noqa: F401 (the views' error body)

MAX_PUSH_TOKEN_LENGTH = 4096
MAX_CAPTCHA_LENGTH = 16384
MAX_CLIENT_LENGTH = 256


class SessionUpdateSerializer(serializers.Serializer):
    """Body of `PATCH /v1/verification/session/{sessionId}` (all optional)."""

    pushToken = serializers.CharField(
        required=False, allow_null=True, default=None, trim_whitespace=False, max_length=MAX_PUSH_TOKEN_LENGTH,
        help_text="APNs or FCM token to which a push challenge is sent; requires pushTokenType",
    )
    pushTokenType = CaseInsensitiveChoiceField(
        choices=PUSH_TOKEN_TYPES, required=False, allow_null=True, default=None,
        help_text="Kind of pushToken; given exactly when pushToken is",
    )
    pushChallenge = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, default=None, trim_whitespace=False,
        help_text="The challenge received by push",
    )
    captcha = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, default=None, trim_whitespace=False,
        max_length=MAX_CAPTCHA_LENGTH,
        help_text="Solved captcha: `signal-hcaptcha.<sitekey>.<action>.<token>` or the provider's raw token",
    )
    mcc = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, default=None, help_text="Mobile country code (ignored)"
    )
    mnc = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, default=None, help_text="Mobile network code (ignored)"
    )

    def validate(self, attrs):
        if (attrs["pushToken"] is None) != (attrs["pushTokenType"] is None):
            raise serializers.ValidationError("pushToken and pushTokenType must be given together or not at all")
        return attrs


class CreateSessionSerializer(SessionUpdateSerializer):
    """Body of `POST /v1/verification/session`. Of the update fields only the push token is used."""

    number = serializers.CharField(trim_whitespace=False, help_text="E.164 number to verify, already normalised")


class RequestCodeSerializer(serializers.Serializer):
    """Body of `POST /v1/verification/session/{sessionId}/code`."""

    transport = CaseInsensitiveChoiceField(choices=(SMS, VOICE))
    client = serializers.CharField(
        allow_blank=True, trim_whitespace=False, max_length=MAX_CLIENT_LENGTH,
        help_text="Client platform label: `ios`, `android-2021-03`, other `android…` values",
    )


class SubmitCodeSerializer(serializers.Serializer):
    """Body of `PUT /v1/verification/session/{sessionId}/code`."""

    code = serializers.CharField(help_text="The code received by SMS or voice")


class VerificationSessionSerializer(serializers.Serializer):
    """The session object (also the body of the 403/409/418/429 answers of session endpoints)."""

    id = serializers.CharField(help_text="Session id: 16 bytes, URL-safe base64 with padding")
    nextSms = serializers.IntegerField(
        allow_null=True, min_value=0, help_text="Seconds before an SMS may be requested; null: not possible"
    )
    nextCall = serializers.IntegerField(
        allow_null=True, min_value=0, help_text="Seconds before a voice call may be requested; null: not possible"
    )
    nextVerificationAttempt = serializers.IntegerField(
        allow_null=True, min_value=0, help_text="Seconds before a code may be submitted; null: no code can be"
    )
    allowedToRequestCode = serializers.BooleanField(help_text="True when no information is requested any more")
    requestedInformation = serializers.ListField(
        child=serializers.ChoiceField(choices=(PUSH_CHALLENGE, CAPTCHA)),
        help_text="What must be supplied (PATCH) before a code may be requested, in order of preference",
    )
    verified = serializers.BooleanField(help_text="A correct code was submitted")


class SenderFailureSerializer(serializers.Serializer):
    """Body of 440: the SMS/voice provider refused to deliver the code."""

    reason = serializers.ChoiceField(choices=SenderRejected.SENDER_REASONS)
    permanentFailure = serializers.BooleanField(help_text="Retrying will not help")


class NumberNotNormalizedSerializer(serializers.Serializer):
    """Body of 400 for a valid number not written in its E.164 form."""

    originalNumber = serializers.CharField()
    normalizedNumber = serializers.CharField()

