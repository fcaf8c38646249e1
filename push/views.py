"""`PUT`/`DELETE /v1/accounts/gcm/` and `/v1/accounts/apn/` (spec §7.1): the calling device's push
token. Thin views over `push.services`; every answer is 204."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.views import UNAUTHORIZED, validated
from push import services
from push.serializers import ApnTokenSerializer, FcmTokenSerializer

TAGS = ["push"]
SET = OpenApiResponse(description="Set; the device is woken by pushes from now on (`fetchesMessages` false)")
CLEARED = OpenApiResponse(description="Cleared; `fetchesMessages` false")


class FcmTokenView(APIView):
    @extend_schema(
        tags=TAGS,
        summary="Set this device's FCM token (clears its APNs token)",
        request=FcmTokenSerializer,
        responses={204: SET, 401: UNAUTHORIZED},
    )
    def put(self, request):
        token = validated(FcmTokenSerializer, request.data)["gcmRegistrationId"]
        services.set_push_token(device=request.auth.device, platform=services.FCM, token=token)
        return Response(status=204)

    @extend_schema(tags=TAGS, summary="Remove this device's FCM token", request=None, responses={204: CLEARED, 401: UNAUTHORIZED})
    def delete(self, request):
        services.clear_push_token(device=request.auth.device, platform=services.FCM)
        return Response(status=204)


class ApnTokenView(APIView):
    @extend_schema(
        tags=TAGS,
        summary="Set this device's APNs token (clears its FCM token)",
        request=ApnTokenSerializer,
        responses={204: SET, 401: UNAUTHORIZED},
    )
    def put(self, request):
        token = validated(ApnTokenSerializer, request.data)["apnRegistrationId"]
        services.set_push_token(device=request.auth.device, platform=services.APNS, token=token)
        return Response(status=204)

    @extend_schema(tags=TAGS, summary="Remove this device's APNs token", request=None, responses={204: CLEARED, 401: UNAUTHORIZED})
    def delete(self, request):
        services.clear_push_token(device=request.auth.device, platform=services.APNS)
        return Response(status=204)
