"""`GET /v2/config`: the remote configuration Signal clients fetch at start-up and every few
hours, as `{"config": {"<name>": "<string value>"}}` with an `ETag`; 304 when `If-None-Match` matches.

Clients gate features and learn limits from it. We carry only limits this server really applies,
under the names Signal's clients read, and never a flag that turns a feature on: a name we leave
out makes the client fall back to its built-in default, which for every feature flag is "off".
Every device gets the same configuration (Signal's per-platform and per-account flags have no
counterpart here).
"""

from __future__ import annotations

import hashlib

import orjson
from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from signalserver.errors import Unauthorized
from signalserver.tunnel import Call

# Groups: at most settings.GROUP_MAX_SIZE members, the creator included. Clients count themselves
# against `global.groupsv2.groupSizeHardLimit` (they let a user pick one fewer other member).
# Above GROUP_SIZE_RECOMMENDED members clients warn that a group may get slow; the clients' own
# default. Signal Desktop cannot build its new-group screen without the value, and it must stay
# below the hard limit.
GROUP_SIZE_RECOMMENDED = 151


def group_size_limits() -> tuple[int, int]:
    """(recommended, hard limit) of group sizes, as the group service enforces the hard one."""
    hard = settings.GROUP_MAX_SIZE
    return min(GROUP_SIZE_RECOMMENDED, hard - 1), hard


SECONDS_PER_DAY = 24 * 3600


def get_remote_config() -> dict[str, str]:
    """The remote configuration every device gets: names as Signal's clients read them, values as strings."""
    recommended, hard_limit = group_size_limits()
    return {
        # Largest attachment upload (ciphertext bytes), as GET /v4/attachments/form/upload enforces it.
        "global.attachments.maxBytes": str(settings.ATTACHMENT_MAX_BYTES),
        "global.groupsv2.maxGroupSize": str(recommended),
        "global.groupsv2.groupSizeHardLimit": str(hard_limit),
        # How long the server keeps a message no device has fetched.
        "global.messageQueueTimeInSeconds": str(settings.MESSAGE_RETENTION_DAYS * SECONDS_PER_DAY),
    }


def config_etag(config: dict[str, str]) -> str:
    """A strong entity tag (quoted) that changes whenever a name or value of `config` does."""
    digest = hashlib.sha256(orjson.dumps(config, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f'"{digest[:32]}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an `If-None-Match` header names `etag` (weakly compared, as RFC 9110 has it for
    this header), or is `*`. Bare (unquoted) tags are accepted too."""
    if not if_none_match:
        return False
    wanted = etag.strip('"')
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*":
            return True
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate.strip('"') == wanted:
            return True
    return False


class RemoteConfigSerializer(serializers.Serializer):
    config = serializers.DictField(
        child=serializers.CharField(),
        help_text="Every value is a string: numbers in decimal (e.g. `global.attachments.maxBytes`)",
    )


ETAG = OpenApiParameter(
    "ETag",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=True,
    description="A hash of the configuration; send it back in `If-None-Match`",
    response=[200, 304],
)
IF_NONE_MATCH = OpenApiParameter(
    "If-None-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="The `ETag` of the configuration the client already has",
)


class RemoteConfigView(APIView):
    @extend_schema(
        tags=["config"],
        summary="Fetch the remote configuration",
        parameters=[IF_NONE_MATCH, ETAG],
        responses={
            200: OpenApiResponse(RemoteConfigSerializer, description="The configuration; its `ETag` in the header"),
            304: OpenApiResponse(description="Unchanged since the configuration `If-None-Match` names; no body"),
            401: OpenApiResponse(description="Missing or wrong device credentials"),
        },
    )
    def get(self, request):
        status, body, headers = get_config(Call.from_drf(request))
        return Response(body, status=status, headers=headers)


def get_config(call: Call) -> tuple[int, dict | None, dict[str, str]]:
    """`GET /v2/config` over HTTP (RemoteConfigView) and as a hot route over sockets: clients ask
    at every start."""
    if call.principal is None:
        raise Unauthorized()
    config = get_remote_config()
    etag = config_etag(config)
    if etag_matches(call.headers.get("if-none-match"), etag):
        return 304, None, {"ETag": etag}
    return 200, {"config": config}, {"ETag": etag}
