"""`POST /v1/directory/lookup` (our extension): a thin view over accounts.discovery.services."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.discovery import services as discovery
from accounts.views import UNAUTHORIZED
from signalserver.fields import Base64Field, validated
from signalserver.schema import EXTENSION, RETRY_AFTER, error, rate_limited, unprocessable
from signalserver.wire import b64encode


class DirectoryLookupSerializer(serializers.Serializer):
    newE164s = serializers.ListField(child=serializers.CharField(trim_whitespace=False), allow_empty=True)
    prevE164s = serializers.ListField(child=serializers.CharField(trim_whitespace=False), required=False, default=list)
    token = Base64Field(length=discovery.TOKEN_BYTES, required=False, allow_null=True, default=None)


class DiscoveredSerializer(serializers.Serializer):
    e164 = serializers.CharField()
    aci = serializers.UUIDField()
    pni = serializers.UUIDField(allow_null=True)


class DirectoryLookupResponseSerializer(serializers.Serializer):
    results = DiscoveredSerializer(many=True)
    token = Base64Field(length=discovery.TOKEN_BYTES, help_text="Send it back with these numbers as `prevE164s`")


DESCRIPTION = EXTENSION + f"""Contact discovery: which of these phone numbers belong to accounts that can be found by their
number. It replaces Signal's contact discovery service (CDSI) and follows its request: `newE164s`,
`prevE164s` and `token`.

**Privacy.** CDSI answers from inside an SGX enclave, so that not even Signal can see which numbers a
client asks about. This server has no enclave: it sees the numbers a user looks up, at the moment of
the lookup. It keeps none of them: the lookup writes nothing, logs no number (nor anything derived
from one), and no rate-limit key holds one. What bounds enumeration is the quota below.

**Answer.** Only the numbers of existing accounts that are discoverable by number
(`PUT /v2/accounts/phone_number_discoverability`) are listed, with their ACI and PNI; the other
numbers are simply absent. Numbers match only in their E.164 form, as accounts register them.

**Quota** (CDSI's scheme). Each number asked about for the first time takes one permit from the
account's `directoryLookup` bucket (by default 50,000, refilling 6 an hour, as Signal's discovery service); each request takes one
from the address's `directoryLookupPerIp` (by default 100, one more every 6 s). The answer's `token` vouches for every
number of the request (`prevE164s` and `newE164s`) without the server storing them: sent back with
exactly that set as `prevE164s`, those numbers are free and only the new ones are charged. Without a
token, or with one that does not match `prevE164s` or was given to another account, every number of
`prevE164s` is charged too.

**Limits.** At most {discovery.MAX_NUMBERS_PER_LOOKUP:,} distinct numbers per request, the two lists
together (duplicates count once; 413 beyond, as for more than {discovery.MAX_ENTRIES_PER_LOOKUP:,}
entries before duplicates are removed). Each must be `+` and 8 to 15 digits, the first not 0 (422)."""


class DirectoryLookupView(APIView):
    @extend_schema(
        tags=["accounts"],
        summary="Which of these phone numbers are discoverable accounts (contact discovery)",
        description=DESCRIPTION,
        request=DirectoryLookupSerializer,
        parameters=[RETRY_AFTER],
        responses={
            200: DirectoryLookupResponseSerializer,
            401: UNAUTHORIZED,
            413: error(f"More than {discovery.MAX_NUMBERS_PER_LOOKUP:,} distinct numbers"),
            422: unprocessable("The body failed validation, a number is not E.164 or the token is not 32 bytes of base64"),
            429: rate_limited(
                "The account's quota of new numbers (`directoryLookup`) or this address's requests "
                "(`directoryLookupPerIp`) ran out"
            ),
        },
    )
    def post(self, request):
        data = validated(DirectoryLookupSerializer, request.data)
        lookup = discovery.lookup_numbers(
            account=request.auth.account,
            new_e164s=data["newE164s"],
            prev_e164s=data["prevE164s"],
            token=data["token"],
            client_ip=request.META.get("REMOTE_ADDR"),
        )
        results = [
            {"e164": found.e164, "aci": str(found.aci), "pni": str(found.pni) if found.pni else None} for found in lookup.results
        ]
        return Response({"results": results, "token": b64encode(lookup.token)})
