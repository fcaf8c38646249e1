"""Bearer tokens (our extension): `POST /v1/auth/token` and `POST /v1/auth/refresh`."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.tokens import services as tokens
from signalserver.errors import Unauthorized
from signalserver.schema import EXTENSION


class TokenPairSerializer(serializers.Serializer):
    accessToken = serializers.CharField(help_text="JWT; send as `Authorization: Bearer <token>`")
    refreshToken = serializers.CharField(help_text="single use; 30 days")
    expiresIn = serializers.IntegerField(help_text="seconds the access token is valid")


class RefreshSerializer(serializers.Serializer):
    refreshToken = serializers.CharField(max_length=256)


def _render(pair: tokens.TokenPair) -> Response:
    body = {"accessToken": pair.access_token, "refreshToken": pair.refresh_token, "expiresIn": pair.expires_in}
    return Response(body, headers={"Cache-Control": "no-store"})  # credentials: no cache may keep them


class AuthTokenView(APIView):
    @extend_schema(
        tags=["auth"],
        summary="Exchange device credentials for an access token (1 hour) and a refresh token (30 days)",
        description=EXTENSION
        + "Needs Basic device credentials (or a socket opened with them); a bearer token cannot mint a "
        "new login, so revoking a login cannot be escaped. A device holds at most "
        f"{tokens.MAX_FAMILIES_PER_DEVICE} logins: a new one ends the oldest.",
        request=None,
        responses={
            200: TokenPairSerializer,
            401: OpenApiResponse(description="Missing or wrong device credentials, or a bearer token"),
        },
    )
    def post(self, request):
        if request.auth.token_family is not None:
            raise Unauthorized("device credentials required")
        return _render(tokens.issue_tokens(device=request.auth.device))


class RefreshTokenView(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(
        tags=["auth"],
        summary="Rotate a refresh token into a new token pair",
        description=EXTENSION
        + "Unauthenticated: the refresh token is the credential. Each refresh token works once; presenting "
        "a spent one revokes every token of that login (its refresh and access tokens) and closes the "
        "device's sockets with 4401. Removing the device or changing its password ends its tokens too.",
        request=RefreshSerializer,
        responses={
            200: TokenPairSerializer,
            401: OpenApiResponse(description="Invalid, expired, revoked or reused refresh token"),
            422: OpenApiResponse(description="No `refreshToken` string"),
        },
    )
    def post(self, request):
        body = RefreshSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return _render(tokens.refresh_tokens(refresh_token=body.validated_data["refreshToken"]))
