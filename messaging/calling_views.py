"""`GET /v2/calling/relays` (Signal's calling relays): the TURN servers a device's one-to-one calls may
relay through, with fresh credentials. A thin view over `messaging.calling`."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.views import UNAUTHORIZED
from messaging import calling
from signalserver.schema import RETRY_AFTER, rate_limited


class TurnTokenSerializer(serializers.Serializer):
    """One relay, as Signal-Server's TurnToken."""

    username = serializers.CharField(help_text="`<expiry in unix seconds>:<random id>` (coturn's REST-API scheme)")
    password = serializers.CharField(help_text="base64(HMAC-SHA1(shared secret, username))")
    ttl = serializers.IntegerField(help_text="Seconds the credentials stay valid; a client may reuse them that long")
    urls = serializers.ListField(child=serializers.CharField(), help_text="turn:, turns: and stun: URLs")
    urlsWithIps = serializers.ListField(
        child=serializers.CharField(), help_text="The same service at literal addresses, tried first; may be empty"
    )
    hostname = serializers.CharField(allow_null=True, help_text="The name TLS checks the `urlsWithIps` against")


class CallingRelaysSerializer(serializers.Serializer):
    relays = TurnTokenSerializer(many=True)


class CallingRelaysView(APIView):
    @extend_schema(
        tags=["calling"],
        summary="Get 1:1 calling relay options for the client",
        description=(
            "The TURN relays this device's one-to-one calls may use, each with credentials that "
            "expire after `ttl` seconds (new ones on every request). Without TURN configured on "
            "this server the answer is still 200, with `relays` empty: Signal's clients then set "
            "a call up without relays (direct addresses only), whereas an error status makes "
            "Android and iOS abandon the call before it starts. Signal-Server itself has no "
            "unconfigured mode."
        ),
        request=None,
        responses={
            200: OpenApiResponse(CallingRelaysSerializer, description="The relays, with fresh credentials; none without TURN configured"),
            401: UNAUTHORIZED,
            429: rate_limited("Too many requests by this account (`getCallingRelays`)"),
        },
        parameters=[RETRY_AFTER],
    )
    def get(self, request):
        return Response(calling.relays_for(request.auth.account))
