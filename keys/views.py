"""Prekey endpoints: thin views over `keys.services`."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from keys import api, services
from keys.api import identity_of
from keys.serializers import (
    CheckKeysSerializer,
    ECSignedPreKeySerializer,
    KeyCountSerializer,
    PreKeyBundleSerializer,
    SetKeysSerializer,
)
from signalserver.errors import Conflict
from signalserver.fields import validated
from signalserver.schema import RETRY_AFTER, rate_limited
from signalserver.tunnel import Call, render

NO_CONTENT = OpenApiResponse(description="Done")
UNAUTHORIZED = OpenApiResponse(description="Missing or wrong credentials")
NO_PNI = OpenApiResponse(description="`identity=pni` for an account without a phone number")
UNKNOWN_IDENTITY = OpenApiResponse(description="`identity` neither aci nor pni")
IDENTITY_PARAMETER = OpenApiParameter("identity", OpenApiTypes.STR, OpenApiParameter.QUERY, enum=["aci", "pni"], description="default aci")


class KeysView(APIView):
    @extend_schema(
        tags=["keys"],
        summary="Upload one-time and repeated-use prekeys",
        description="A non-empty list replaces that pool; an absent or empty one keeps it. Every signature is checked before anything is stored.",
        parameters=[IDENTITY_PARAMETER],
        request=SetKeysSerializer,
        responses={204: NO_CONTENT, 400: NO_PNI, 401: UNAUTHORIZED, 422: OpenApiResponse(description="Too many keys, bad key bytes or a bad signature")},
    )
    def put(self, request):
        services.upload_keys(
            account=request.auth.account,
            device=request.auth.device,
            identity=identity_of(request.query_params.get("identity")),
            **validated(SetKeysSerializer, request.data),
        )
        return Response(status=204)

    @extend_schema(
        tags=["keys"],
        summary="How many one-time keys this device has left",
        parameters=[IDENTITY_PARAMETER],
        responses={200: KeyCountSerializer, 400: NO_PNI, 401: UNAUTHORIZED, 422: UNKNOWN_IDENTITY},
    )
    def get(self, request):
        return render(api.get_key_counts(Call.from_drf(request)))


class CheckKeysView(APIView):
    @extend_schema(
        tags=["keys"],
        summary="Check the stored repeated-use keys against the client's digest",
        request=CheckKeysSerializer,
        responses={200: OpenApiResponse(description="The keys match"), 409: OpenApiResponse(description="Different or missing: upload again"), 401: UNAUTHORIZED, 422: OpenApiResponse(description="Digest not 32 bytes")},
    )
    def post(self, request):
        body = validated(CheckKeysSerializer, request.data)
        if not services.repeated_use_keys_match(
            account=request.auth.account,
            device=request.auth.device,
            identity=identity_of(body["identityType"]),
            digest=body["digest"],
        ):
            raise Conflict("repeated-use keys differ")
        return Response(status=200)


class SignedKeyView(APIView):
    @extend_schema(
        tags=["keys"],
        summary="Replace the signed EC prekey (retired by Signal; kept for old clients)",
        parameters=[IDENTITY_PARAMETER],
        request=ECSignedPreKeySerializer,
        responses={204: NO_CONTENT, 400: NO_PNI, 401: UNAUTHORIZED, 422: OpenApiResponse(description="Bad key or signature")},
    )
    def put(self, request):
        services.set_signed_prekey(
            account=request.auth.account,
            device=request.auth.device,
            identity=identity_of(request.query_params.get("identity")),
            signed_prekey=validated(ECSignedPreKeySerializer, request.data),
        )
        return Response(status=204)


class PreKeyBundleView(APIView):
    permission_classes = [AllowAny]  # device credentials or an unidentified access key

    @extend_schema(
        tags=["keys"],
        summary="Fetch a prekey bundle for one device (or `*`: all) of an account",
        description="Each one-time key is handed out once; without Kyber one-time keys the last-resort key is returned (and kept).",
        parameters=[
            OpenApiParameter("service_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="ACI or PNI:<uuid>"),
            OpenApiParameter("device_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="device id or *"),
            OpenApiParameter("Unidentified-Access-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, description="instead of credentials"),
            OpenApiParameter(
                "Group-Send-Token", OpenApiTypes.STR, OpenApiParameter.HEADER,
                description="instead of credentials: a group send token for exactly the target (see PUT /v1/messages/{destination})",
            ),
            RETRY_AFTER,
        ],
        responses={
            200: PreKeyBundleSerializer,
            400: OpenApiResponse(description="Mixed authorization"),
            401: UNAUTHORIZED,
            404: OpenApiResponse(description="No such account or device, or no device has keys"),
            422: OpenApiResponse(description="deviceId neither a number nor *, or not a service id"),
            429: rate_limited("Too many fetches of this account's keys by this device (`prekeys`)"),
        },
    )
    def get(self, request, service_id, device_id):
        return render(api.get_prekey_bundle(Call.from_drf(request), service_id, device_id))
