"""JSON shapes of two-factor authentication (our extension): the one-time code field shared by the
TOTP endpoints and the registration body's `totp`."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.totp.services import BACKUP_CODE_COUNT, BACKUP_CODE_DIGITS, CODE_DIGITS

SEPARATORS = str.maketrans("", "", " -")


@extend_schema_field(
    {
        "oneOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": r"^[0-9 -]+$"}],
        "description": f"a {CODE_DIGITS}-digit one-time password (an integer or a string, leading zeros "
        f"kept) or a {BACKUP_CODE_DIGITS}-digit backup code (spaces and dashes ignored)",
    }
)
class OneTimeCodeField(serializers.Field):
    """A TOTP code or a backup code, as digits. Signal's registration body sends the code as an
    integer, which loses leading zeros: integers below 10^6 are TOTP codes."""

    default_error_messages = {
        "invalid": f"must be a {CODE_DIGITS}-digit code or a {BACKUP_CODE_DIGITS}-digit backup code"
    }

    def to_internal_value(self, data):
        if isinstance(data, int) and not isinstance(data, bool):
            if data < 0:
                self.fail("invalid")
            digits = f"{data:0{CODE_DIGITS}d}" if data < 10**CODE_DIGITS else str(data)
        elif isinstance(data, str) and len(data) <= 2 * BACKUP_CODE_DIGITS:
            digits = data.translate(SEPARATORS)
        else:
            self.fail("invalid")
        if not (digits.isascii() and digits.isdigit()) or len(digits) not in (CODE_DIGITS, BACKUP_CODE_DIGITS):
            self.fail("invalid")
        return digits

    def to_representation(self, value):
        return value


class TotpCodeSerializer(serializers.Serializer):
    code = OneTimeCodeField()


class OptionalTotpCodeSerializer(serializers.Serializer):
    code = OneTimeCodeField(required=False, allow_null=True, default=None)


class TotpEnrolmentSerializer(serializers.Serializer):
    secret = serializers.CharField(help_text="base32 secret, for manual entry into an authenticator app")
    uri = serializers.CharField(help_text="`otpauth://totp/…` URI, for a QR code")


class BackupCodesSerializer(serializers.Serializer):
    backupCodes = serializers.ListField(
        child=serializers.CharField(),
        min_length=BACKUP_CODE_COUNT,
        max_length=BACKUP_CODE_COUNT,
        help_text=f"{BACKUP_CODE_COUNT} single-use {BACKUP_CODE_DIGITS}-digit codes; shown this once",
    )
