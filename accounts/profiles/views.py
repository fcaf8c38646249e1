"""`/v1/profile`: thin views over accounts.profiles.services (reads: accounts.profiles.api)."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.profiles import api
from accounts.profiles import services as profiles
from accounts.profiles.serializers import (
    AvatarFormSerializer,
    IdentityCheckSerializer,
    ProfileSerializer,
    SetProfileSerializer,
    VersionedProfileSerializer,
)
from accounts.views import UNAUTHORIZED, VALIDATION
from signalserver import ratelimit
from signalserver.errors import NotFound
from signalserver.fields import validated
from signalserver.schema import RETRY_AFTER, error, rate_limited
from signalserver.tunnel import Call, render
from signalserver.wire import b64encode

TAGS = ["profiles"]
OPTIONAL_ACCESS = [
    OpenApiParameter("Unidentified-Access-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, description="instead of credentials (ACI targets)"),
    RETRY_AFTER,
]
READ_ERRORS = {
    400: error("Two kinds of authorization"),
    401: OpenApiResponse(description="No or wrong credentials or access key; anonymous callers also get it for an account that does not exist"),
    404: OpenApiResponse(description="No such account (authenticated callers)"),
    422: error("Not a service id"),
    429: rate_limited("Too many profile reads by this account (`profile`)"),
}


class SetProfileView(APIView):
    @extend_schema(
        tags=TAGS,
        summary="Set this account's current profile version",
        description=(
            "Every field is ciphertext under the profile key (lengths as Signal's clients pad them). "
            "`commitment` is a zkgroup ProfileKeyCommitment: stored opaque, only its length (97 bytes) "
            "is checked, since this server issues no zkgroup credentials. With `avatar` true and "
            "`sameAvatar` false the answer is an S3 POST-policy form for the new avatar."
        ),
        request=SetProfileSerializer,
        responses={200: AvatarFormSerializer, 401: UNAUTHORIZED, 422: VALIDATION},
    )
    def put(self, request):
        data = validated(SetProfileSerializer, request.data)
        form = profiles.set_profile(
            account=request.auth.account,
            profile=profiles.ProfileVersion(
                version=data["version"].lower(),
                commitment=data["commitment"],
                name=data["name"],
                about=data["about"],
                about_emoji=data["aboutEmoji"],
                payment_address=data["paymentAddress"],
                phone_number_sharing=data["phoneNumberSharing"],
                avatar=data["avatar"],
                same_avatar=data["sameAvatar"],
            ),
        )
        return Response(form) if form is not None else Response(status=200)



class ProfileView(APIView):
    permission_classes = [AllowAny]  # device credentials or an unidentified access key

    @extend_schema(
        tags=TAGS,
        summary="An account's identity key and access facts (unversioned profile)",
        parameters=[
            *OPTIONAL_ACCESS,
            OpenApiParameter(
                "Group-Send-Token", OpenApiTypes.STR, OpenApiParameter.HEADER,
                description="instead of credentials: a group send token for exactly the target (see PUT /v1/messages/{destination})",
            ),
        ],
        responses={200: ProfileSerializer, **READ_ERRORS},
    )
    def get(self, request, service_id):
        return render(api.get_profile(Call.from_drf(request), service_id))


class VersionedProfileView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(
        tags=TAGS,
        summary="A version of an account's encrypted profile",
        description="A version the account does not have is not a 404: its fields are null.",
        parameters=OPTIONAL_ACCESS,
        responses={200: VersionedProfileSerializer, **READ_ERRORS},
    )
    def get(self, request, service_id, version):
        return render(api.get_versioned_profile(Call.from_drf(request), service_id, version))


class ProfileCredentialView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(
        tags=TAGS,
        summary="Not supported: zkgroup profile key credentials",
        description="This server issues no zkgroup credentials (no Python zkgroup); always 404.",
        responses={404: error("Not supported")},
    )
    def get(self, request, service_id, version, credential_request):
        raise NotFound("zkgroup credentials are not supported")


class IdentityCheckView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        tags=TAGS,
        summary="Which of these identity keys changed",
        description="Each element names a service id and the first 4 bytes of SHA-256 of the identity key the client has; the answer lists the elements whose key differs, with the key the server has.",
        request=IdentityCheckSerializer,
        parameters=[RETRY_AFTER],
        responses={
            200: {"type": "object", "properties": {"elements": {"type": "array", "items": {"type": "object", "properties": {"uuid": {"type": "string"}, "identityKey": {"type": "string", "format": "byte"}}}}}},
            422: VALIDATION,
            429: rate_limited("Too many checks from this address (`batchIdentityCheck`)"),
        },
    )
    def post(self, request):
        remote_ip = request.META.get("REMOTE_ADDR")
        ratelimit.check("batchIdentityCheck", ratelimit.hashed(remote_ip) if remote_ip else None)
        data = validated(IdentityCheckSerializer, request.data)
        elements = [(api.parse_service_id(element["uuid"]), element["fingerprint"]) for element in data["elements"]]
        mismatches = profiles.identity_check(elements)
        return Response({"elements": [{"uuid": str(target), "identityKey": b64encode(key)} for target, key in mismatches]})
