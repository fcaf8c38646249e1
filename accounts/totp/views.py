"""Two-factor authentication (our extension): `POST/PUT/DELETE /v1/accounts/totp`, thin views over
`accounts.totp.services`."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.totp import services as totp
from accounts.totp.serializers import (
    BackupCodesSerializer,
    OptionalTotpCodeSerializer,
    TotpCodeSerializer,
    TotpEnrolmentSerializer,
)
from accounts.views import UNAUTHORIZED
from signalserver.fields import validated
from signalserver.schema import EXTENSION, RETRY_AFTER, rate_limited

NOT_PRIMARY = "Not the primary device"
RATE_LIMITED = rate_limited("Too many code checks (`checkTotp`: 5, one more every 6 s)")
# Secrets and codes must not be kept by caches on the way.
NO_STORE = {"Cache-Control": "no-store"}


class TotpView(APIView):
    @extend_schema(
        tags=["accounts"],
        summary="Start enrolling two-factor authentication (TOTP); primary only",
        description=EXTENSION
        + "Returns a new secret (RFC 6238: SHA-1, 6 digits, 30 s) and its `otpauth://` URI; it takes "
        "effect once `PUT` confirms it with a code. Starting again before confirming replaces the secret. "
        "Once confirmed, re-registering the account's number needs a code (`totp` in the registration body, "
        "441 without).",
        request=None,
        responses={
            200: TotpEnrolmentSerializer,
            401: UNAUTHORIZED,
            403: OpenApiResponse(description=NOT_PRIMARY),
            409: OpenApiResponse(description="Already enrolled: remove it first"),
        },
    )
    def post(self, request):
        started = totp.start_totp_enrolment(account=request.auth.account, device=request.auth.device)
        return Response({"secret": started.secret, "uri": started.uri}, headers=NO_STORE)

    @extend_schema(
        tags=["accounts"],
        summary="Confirm two-factor enrolment with a current code; returns the backup codes",
        description=EXTENSION
        + "The code of the current 30-second step (or one step either side) confirms the pending secret. "
        "The 10 backup codes are shown this once (only their hashes are kept); each works once wherever a "
        "code is asked for.",
        request=TotpCodeSerializer,
        parameters=[RETRY_AFTER],
        responses={
            200: BackupCodesSerializer,
            401: UNAUTHORIZED,
            403: OpenApiResponse(description=f"Wrong or already used code, or {NOT_PRIMARY.lower()}"),
            409: OpenApiResponse(description="No enrolment waiting for confirmation (start with POST)"),
            422: OpenApiResponse(description="`code` missing or not a 6-digit code"),
            429: RATE_LIMITED,
        },
    )
    def put(self, request):
        code = validated(TotpCodeSerializer, request.data)["code"]
        backup_codes = totp.confirm_totp_enrolment(account=request.auth.account, device=request.auth.device, code=code)
        return Response({"backupCodes": backup_codes}, headers=NO_STORE)

    @extend_schema(
        tags=["accounts"],
        summary="Remove two-factor authentication",
        description=EXTENSION
        + "Body `{\"code\": …}`: removing a confirmed second factor needs a current code or a backup code, so "
        "device credentials alone cannot strip it. A pending enrolment is removed without one; nothing "
        "enrolled is not an error.",
        request=OptionalTotpCodeSerializer,
        parameters=[RETRY_AFTER],
        responses={
            204: OpenApiResponse(description="Removed (or nothing was enrolled)"),
            401: UNAUTHORIZED,
            403: OpenApiResponse(description=f"Code missing, wrong or already used, or {NOT_PRIMARY.lower()}"),
            422: OpenApiResponse(description="`code` is not a 6-digit code or a 10-digit backup code"),
            429: RATE_LIMITED,
        },
    )
    def delete(self, request):
        code = validated(OptionalTotpCodeSerializer, request.data or {})["code"]
        totp.remove_totp(account=request.auth.account, device=request.auth.device, code=code)
        return Response(status=204)
