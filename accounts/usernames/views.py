"""`/v1/accounts/username_hash` and `/v1/accounts/username_link`: thin views over
accounts.usernames.services."""

import uuid

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.usernames import services as usernames
from accounts.views import NO_CONTENT, UNAUTHORIZED, VALIDATION
from signalserver.auth import carries_credentials
from signalserver.errors import BadRequest, UnprocessableEntity
from signalserver.fields import Base64Field, validated
from signalserver.schema import RETRY_AFTER, error, rate_limited
from signalserver.wire import b64decode_url, b64encode_url

TAGS = ["usernames"]
HASH_BYTES = 32
MAX_PROOF_BYTES = 1024
MAX_ENCRYPTED_USERNAME_BYTES = 128


class ReserveSerializer(serializers.Serializer):
    usernameHashes = serializers.ListField(
        child=Base64Field(length=HASH_BYTES, url_safe=True), min_length=1, max_length=usernames.MAX_CANDIDATES
    )


class ConfirmSerializer(serializers.Serializer):
    usernameHash = Base64Field(length=HASH_BYTES, url_safe=True)
    zkProof = Base64Field(max_length=MAX_PROOF_BYTES, url_safe=True)
    encryptedUsername = Base64Field(max_length=MAX_ENCRYPTED_USERNAME_BYTES, url_safe=True, required=False, allow_null=True, default=None)


class LinkSerializer(serializers.Serializer):
    usernameLinkEncryptedValue = Base64Field(max_length=MAX_ENCRYPTED_USERNAME_BYTES, url_safe=True)
    keepLinkHandle = serializers.BooleanField(required=False, default=False)


HASH_ANSWER = {"type": "object", "properties": {"usernameHash": {"type": "string"}}}
CONFIRM_ANSWER = {"type": "object", "properties": {"usernameHash": {"type": "string"}, "usernameLinkHandle": {"type": "string", "format": "uuid", "nullable": True}}}
LINK_HANDLE_ANSWER = {"type": "object", "properties": {"usernameLinkHandle": {"type": "string", "format": "uuid"}}}
UNAUTHENTICATED_ONLY = OpenApiResponse(description="Called with credentials (this lookup must be anonymous)")


def _hash_b64(value: bytes) -> str:
    return b64encode_url(value, padded=False)


class ReserveView(APIView):
    @extend_schema(
        tags=TAGS,
        summary="Reserve the first of these username hashes no one else has, for 5 minutes",
        request=ReserveSerializer,
        parameters=[RETRY_AFTER],
        responses={200: HASH_ANSWER, 401: UNAUTHORIZED, 409: error("Every hash is taken"), 422: VALIDATION, 429: rate_limited("`usernameReserve`")},
    )
    def put(self, request):
        hashes = validated(ReserveSerializer, request.data)["usernameHashes"]
        return Response({"usernameHash": _hash_b64(usernames.reserve(account=request.auth.account, hashes=hashes))})


class ConfirmView(APIView):
    @extend_schema(
        tags=TAGS,
        summary="Make a reserved username hash this account's username",
        description=(
            "`zkProof` is libsignal's proof that the hash comes from a username the client knows. This "
            "server cannot verify it (libsignal's username crate has no Python binding): it is stored, "
            "not checked, so a client could confirm a hash of its own making."
        ),
        request=ConfirmSerializer,
        parameters=[RETRY_AFTER],
        responses={
            200: CONFIRM_ANSWER,
            401: UNAUTHORIZED,
            409: error("No reservation of this hash"),
            410: error("Another account has the hash now"),
            422: VALIDATION,
            429: rate_limited("`usernameSet`"),
        },
    )
    def put(self, request):
        data = validated(ConfirmSerializer, request.data)
        result = usernames.confirm(
            account=request.auth.account, username_hash=data["usernameHash"], zk_proof=data["zkProof"], encrypted_username=data["encryptedUsername"]
        )
        handle = result["usernameLinkHandle"]
        return Response({"usernameHash": _hash_b64(result["usernameHash"]), "usernameLinkHandle": str(handle) if handle else None})


class UsernameHashView(APIView):
    @extend_schema(tags=TAGS, summary="Give up this account's username (held 7 days) and its link", responses={204: NO_CONTENT, 401: UNAUTHORIZED})
    def delete(self, request):
        usernames.delete(account=request.auth.account)
        return Response(status=204)


class LookupView(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(
        tags=TAGS,
        summary="The account whose username has this hash",
        parameters=[OpenApiParameter("username_hash", OpenApiTypes.STR, OpenApiParameter.PATH, description="URL-safe base64 of 32 bytes"), RETRY_AFTER],
        responses={
            200: {"type": "object", "properties": {"uuid": {"type": "string", "format": "uuid"}}},
            400: UNAUTHENTICATED_ONLY,
            404: OpenApiResponse(description="No account has this username"),
            422: error("Not 32 bytes of URL-safe base64"),
            429: rate_limited("Too many lookups from this address (`usernameLookup`)"),
        },
    )
    def get(self, request, username_hash):
        if carries_credentials(request._request):
            raise BadRequest("must not be authenticated")
        try:
            value = b64decode_url(username_hash)
        except ValueError:
            raise UnprocessableEntity("invalid username hash") from None
        if len(value) != HASH_BYTES:
            raise UnprocessableEntity("invalid username hash")
        return Response({"uuid": str(usernames.lookup(username_hash=value, client_ip=request.META.get("REMOTE_ADDR")))})


class LinkView(APIView):
    @extend_schema(
        tags=TAGS,
        summary="Set this account's username link (the username encrypted by the client)",
        request=LinkSerializer,
        parameters=[RETRY_AFTER],
        responses={200: LINK_HANDLE_ANSWER, 401: UNAUTHORIZED, 409: error("No username is set"), 422: VALIDATION, 429: rate_limited("`usernameLinkOperation`")},
    )
    def put(self, request):
        data = validated(LinkSerializer, request.data)
        handle = usernames.set_link(account=request.auth.account, encrypted_value=data["usernameLinkEncryptedValue"], keep_handle=data["keepLinkHandle"])
        return Response({"usernameLinkHandle": str(handle)})

    @extend_schema(tags=TAGS, summary="Remove this account's username link", parameters=[RETRY_AFTER], responses={204: NO_CONTENT, 401: UNAUTHORIZED, 429: rate_limited("`usernameLinkOperation`")})
    def delete(self, request):
        usernames.delete_link(account=request.auth.account)
        return Response(status=204)


class LinkLookupView(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(
        tags=TAGS,
        summary="The encrypted username behind a username link",
        parameters=[OpenApiParameter("handle", OpenApiTypes.STR, OpenApiParameter.PATH, description="the link's handle (a UUID)"), RETRY_AFTER],
        responses={
            200: {"type": "object", "properties": {"usernameLinkEncryptedValue": {"type": "string"}, "keepLinkHandle": {"type": "boolean"}}},
            400: UNAUTHENTICATED_ONLY,
            404: OpenApiResponse(description="No such link"),
            422: error("Not a UUID"),
            429: rate_limited("Too many lookups from this address (`usernameLinkLookupPerIp`)"),
        },
    )
    def get(self, request, handle):
        if carries_credentials(request._request):
            raise BadRequest("must not be authenticated")
        try:
            parsed = uuid.UUID(handle)
        except ValueError:
            raise UnprocessableEntity("invalid link handle") from None
        value = usernames.read_link(handle=parsed, client_ip=request.META.get("REMOTE_ADDR"))
        return Response({"usernameLinkEncryptedValue": b64encode_url(value, padded=False), "keepLinkHandle": False})
