"""`PUT`/`DELETE /v1/accounts/gcm/` and `/v1/accounts/apn/` (Signal's push token API): the calling device's push
token. Thin views over `push.services`; every answer is 204."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.views import UNAUTHORIZED
from push import services
from push.serializers import ApnTokenSerializer, FcmTokenSerializer
from signalserver.fields import validated

TAGS = ["push"]
SET = OpenApiResponse(description="Set; the device is woken by pushes from now on (`fetchesMessages` false)")
CLEARED = OpenApiResponse(description="Cleared; `fetchesMessages` false")


def _token_view(platform: str, name: str, serializer, field: str, other: str):
    """The view of one platform's token: PUT sets it (clearing the other platform's), DELETE clears it."""

    class TokenView(APIView):
        @extend_schema(
            tags=TAGS,
            summary=f"Set this device's {name} token (clears its {other} token)",
            request=serializer,
            responses={204: SET, 401: UNAUTHORIZED},
        )
        def put(self, request):
            token = validated(serializer, request.data)[field]
            services.set_push_token(device=request.auth.device, platform=platform, token=token)
            return Response(status=204)

        @extend_schema(tags=TAGS, summary=f"Remove this device's {name} token", request=None, responses={204: CLEARED, 401: UNAUTHORIZED})
        def delete(self, request):
            services.clear_push_token(device=request.auth.device, platform=platform)
            return Response(status=204)

    TokenView.__name__ = TokenView.__qualname__ = f"{name}TokenView"
    return TokenView


FcmTokenView = _token_view(services.FCM, "FCM", FcmTokenSerializer, "gcmRegistrationId", "APNs")
ApnTokenView = _token_view(services.APNS, "APNs", ApnTokenSerializer, "apnRegistrationId", "FCM")
