"""`POST /v1/registration`: a thin view over `accounts.registration.api`."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.views import APIView

from accounts.registration import api
from accounts.registration.serializers import (
    RegistrationLockFailureSerializer,
    RegistrationSerializer,
    RegistrationResponseSerializer,
)
from accounts.verification.serializers import NumberNotNormalizedSerializer
from signalserver.schema import RETRY_AFTER, rate_limited
from signalserver.tunnel import Call, render


class RegistrationView(APIView):
    """Not device-authenticated: the Basic header carries the number being registered and the new
    primary device's password, read here directly."""

    authentication_classes: list = []
    permission_classes: list = []
    parser_classes: list = []  # the handler (accounts.registration.api) parses the raw body

    @extend_schema(
        tags=["registration"],
        summary="Register (or re-register) a phone number's primary device",
        description=(
            "`Authorization: Basic base64(<E.164 number>:<new device password>)`; the password must be "
            "16 to 512 characters (422 otherwise). Exactly one proof of the number: `sessionId` of a "
            "verified verification session or the number's `recoveryPassword`. A re-registration keeps "
            "the ACI and replaces every device and key of the account."
        ),
        request={"application/json": RegistrationSerializer},
        parameters=[
            OpenApiParameter(
                "X-Signal-Agent", OpenApiTypes.STR, OpenApiParameter.HEADER, description="device-kind label to store"
            ),
            RETRY_AFTER,
        ],
        responses={
            200: RegistrationResponseSerializer,
            400: OpenApiResponse(
                NumberNotNormalizedSerializer,
                description="Malformed JSON; unknown, expired or other number's session; or a number not in its "
                "normalised form (body `{\"originalNumber\", \"normalizedNumber\"}`)",
            ),
            401: OpenApiResponse(description="Missing or malformed Basic header, or the session is not verified"),
            403: OpenApiResponse(description="Recovery password wrong (or an unsupported receipt credential)"),
            409: OpenApiResponse(description="Device transfer available: retry with `skipDeviceTransfer: true`"),
            422: OpenApiResponse(description="Validation failed: shapes, invalid number, password length, signatures"),
            423: OpenApiResponse(RegistrationLockFailureSerializer, description="Registration lock required"),
            441: OpenApiResponse(
                description="The number's account has two-factor authentication: `totp` (a current one-time "
                "password or an unused backup code) is missing, wrong or already used (signalserver extension)"
            ),
            429: rate_limited("Too many registrations of this number (`registration`), or registration lock guesses (`pin`)"),
            499: OpenApiResponse(description="A required capability (`spqr`) is missing"),
        },
    )
    def post(self, request):
        return render(api.register(Call.from_drf(request)))
