"""The group API (docs/architecture.md, "Groups"): thin views over groups.services and
groups.selectors. The group is named by the `X-Group-Id` header (base64 of its 32-byte id)."""

from __future__ import annotations

import orjson
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from groups import openapi as doc
from groups import selectors, services, wire
from signalserver.errors import BadRequest
from signalserver.schema import EXTENSION, RETRY_AFTER, error, rate_limited
from signalserver.wire import b64encode

TAGS = ["groups"]
UINT32_MAX = 2**32 - 1


def _group_id(request) -> bytes:
    value = request.headers.get("X-Group-Id", "")
    try:
        group_id = wire.decode_b64_any(value) if len(value) <= 64 else b""
    except ValueError:
        group_id = b""
    if len(group_id) != wire.GROUP_ID_BYTES:
        raise BadRequest("X-Group-Id must be base64 of the group's 32-byte id")
    return group_id


def _password(value: str | None, *, strict: bool) -> bytes | None:
    """An invite link password from a query or path: None when absent (or, not `strict`, undecodable)."""
    if not value:
        return None
    try:
        return wire.decode_b64_any(value) if len(value) <= 64 else None
    except ValueError:
        if strict:
            raise BadRequest("inviteLinkPassword must be base64") from None
        return None


def _uint(value: str | None, name: str, default: int | None) -> int | None:
    if value is None or value == "":
        return default
    if not value.isdigit() or int(value) > UINT32_MAX:
        raise BadRequest(f"{name} must be a non-negative integer")
    return int(value)


def _flag(value: str | None, name: str) -> bool:
    if value is None or value.lower() == "false":
        return False
    if value.lower() == "true":
        return True
    raise BadRequest(f"{name} must be true or false")


class JsonRenderer(BaseRenderer):
    """JSON through orjson: a 1,000-member state with its endorsements is about 300 KB, which the
    standard library's encoder takes several milliseconds to write."""

    media_type = "application/json"
    format = "json"
    charset = None  # `Content-Type: application/json` exactly

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return b"" if data is None else orjson.dumps(data)


class GroupAPIView(APIView):
    renderer_classes = [JsonRenderer]


class GroupView(GroupAPIView):
    parser_classes: list = []  # bodies are parsed by groups.wire (400 for anything malformed)

    @extend_schema(
        tags=TAGS,
        summary="Read a group's current state",
        description=doc.TRADE_OFF + "Members and invitees read the state; full members also get group send endorsements.",
        parameters=[doc.GROUP_ID],
        responses={
            200: doc.GROUP_RESPONSE,
            400: error(doc.BAD_GROUP_ID),
            403: error("Neither a member nor invited"),
            404: doc.NO_GROUP,
        },
    )
    def get(self, request):
        return Response(selectors.read_group(account=request.auth.account, group_id=_group_id(request)))

    @extend_schema(
        tags=TAGS,
        summary="Create a group",
        description=doc.TRADE_OFF
        + "The initial state, version 0: the creator is an ADMINISTRATOR member; members and invitees may be "
        "given, join requests and bans not.",
        parameters=[doc.GROUP_ID, RETRY_AFTER],
        request={"application/json": doc.NEW_GROUP},
        responses={
            200: doc.GROUP_RESPONSE,
            400: error("Malformed JSON, an unknown field, or a state that breaks a rule of groups"),
            409: error("A group with this id exists"),
            429: rate_limited("Over `groupCreate`"),
        },
    )
    def put(self, request):
        group = wire.parse_new_group(request.body)
        account = request.auth.account
        state = services.create_group(account=account, group_id=_group_id(request), group=group)
        return Response({"group": state, "groupSendEndorsements": selectors.endorsements_for(state, account)})

    @extend_schema(
        tags=TAGS,
        summary="Change a group",
        description=doc.TRADE_OFF
        + "Applies the actions as version current + 1, by Signal's rules (permissions checked against the "
        "state before, invariants after, an administrator kept). Answers the signed change. A link "
        "holder joins (or asks to) with `inviteLinkPassword`.",
        parameters=[
            doc.GROUP_ID,
            OpenApiParameter("inviteLinkPassword", OpenApiTypes.STR, OpenApiParameter.QUERY, description="base64, to join by invite link"),
            doc.FORBIDDEN_REASON,
            RETRY_AFTER,
        ],
        request={"application/json": doc.ACTIONS},
        responses={
            200: doc.CHANGE_RESPONSE,
            400: error("Malformed JSON, an unknown field, or a change that breaks a rule of groups"),
            403: error("The caller may not make this change (`X-Signal-Forbidden-Reason: banned` when banned)"),
            404: doc.NO_GROUP,
            409: OpenApiResponse(
                {"anyOf": [doc.GROUP, {"$ref": "#/components/schemas/Error"}]},
                description="Not the next version: the current state (for members and invitees), fetch it and rebase",
            ),
            429: rate_limited("Over `groupChange`"),
        },
    )
    def patch(self, request):
        actions = wire.parse_actions(request.body)
        account = request.auth.account
        result = services.change_group(
            account=account,
            group_id=_group_id(request),
            actions=actions,
            link_password=_password(request.query_params.get("inviteLinkPassword"), strict=True),
        )
        return Response({"groupChange": result.change, "groupSendEndorsements": selectors.endorsements_for(result.state, account)})


class GroupLogView(GroupAPIView):
    @extend_schema(
        tags=TAGS,
        summary="Read a group's changes from a version on",
        description=doc.TRADE_OFF
        + "Full members read from the version they joined at. At most 64 versions a page: a partial page is "
        "206 with `Content-Range: versions <from>-<to>/<latest>`. A state comes with each change whose "
        "epoch is above `maxSupportedChangeEpoch` (with every change when that is not given), and with "
        "the first and last change of the page when asked for.",
        parameters=[
            doc.GROUP_ID,
            OpenApiParameter("from_version", OpenApiTypes.INT, OpenApiParameter.PATH),
            OpenApiParameter("limit", OpenApiTypes.INT, OpenApiParameter.QUERY, description="1 to 64 (default)"),
            OpenApiParameter("maxSupportedChangeEpoch", OpenApiTypes.INT, OpenApiParameter.QUERY),
            OpenApiParameter("includeFirstState", OpenApiTypes.BOOL, OpenApiParameter.QUERY),
            OpenApiParameter("includeLastState", OpenApiTypes.BOOL, OpenApiParameter.QUERY),
            doc.CONTENT_RANGE,
        ],
        responses={
            200: doc.LOG_RESPONSE,
            206: OpenApiResponse(doc.LOG_RESPONSE, description="One page; more versions follow"),
            400: error(f"{doc.BAD_GROUP_ID}, or a query value that is not a number or boolean"),
            403: error("Not a full member, or asking for versions before the caller joined"),
            404: doc.NO_GROUP,
        },
    )
    def get(self, request, from_version):
        query = request.query_params
        page = selectors.read_log(
            account=request.auth.account,
            group_id=_group_id(request),
            from_version=_uint(from_version, "fromVersion", None),
            limit=_uint(query.get("limit"), "limit", selectors.LOG_PAGE_MAX),
            max_supported_change_epoch=_uint(query.get("maxSupportedChangeEpoch"), "maxSupportedChangeEpoch", None),
            include_first_state=_flag(query.get("includeFirstState"), "includeFirstState"),
            include_last_state=_flag(query.get("includeLastState"), "includeLastState"),
        )
        if page.content_range is None:
            return Response(page.body)
        return Response(page.body, status=206, headers={"Content-Range": page.content_range})


class GroupJoinInfoView(GroupAPIView):
    @extend_schema(
        tags=TAGS,
        summary="Preview a group by its invite link",
        description=doc.TRADE_OFF + "For a holder of the link (its password in the path, URL-safe base64), or without "
        "it for someone already asking to join: title, description, avatar, member count, link access and version.",
        parameters=[doc.GROUP_ID, doc.FORBIDDEN_REASON],
        responses={
            200: doc.JOIN_INFO,
            400: error(doc.BAD_GROUP_ID),
            403: error("Not the group's current link, the link is off, or the caller is banned (`X-Signal-Forbidden-Reason: banned`)"),
            404: doc.NO_GROUP,
        },
    )
    def get(self, request, password=""):
        link_password = _password(password, strict=False)
        return Response(selectors.join_info(account=request.auth.account, group_id=_group_id(request), link_password=link_password))


class GroupJoinedAtVersionView(GroupAPIView):
    @extend_schema(
        tags=TAGS,
        summary="The version at which the caller joined the group",
        description=doc.TRADE_OFF,
        parameters=[doc.GROUP_ID],
        responses={
            200: {"type": "object", "properties": {"joinedAtVersion": doc.UINT}, "required": ["joinedAtVersion"]},
            400: error(doc.BAD_GROUP_ID),
            403: error("Not a full member"),
            404: doc.NO_GROUP,
        },
    )
    def get(self, request):
        version = selectors.joined_at_version(account=request.auth.account, group_id=_group_id(request))
        return Response({"joinedAtVersion": version})


class GroupAvatarFormView(GroupAPIView):
    @extend_schema(
        tags=TAGS,
        summary="A form to upload a new encrypted group avatar",
        description=doc.TRADE_OFF + "An S3 POST-policy form for one object of at most 3 MiB, for members allowed to "
        "modify the group's attributes; then set its `key` with `modifyAvatar`.",
        parameters=[doc.GROUP_ID],
        responses={
            200: doc.AVATAR_FORM,
            400: error(doc.BAD_GROUP_ID),
            403: error("Not allowed to modify the group's attributes"),
            404: doc.NO_GROUP,
        },
    )
    def get(self, request):
        return Response(services.avatar_upload_form(account=request.auth.account, group_id=_group_id(request)))


class GroupPublicKeyView(GroupAPIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        tags=TAGS,
        summary="The key that signs group changes",
        description=EXTENSION + "Every change in the group log carries `serverSignature`, an Ed25519 signature of its "
        "`actions` bytes by this key.",
        responses={200: doc.PUBLIC_KEY},
    )
    def get(self, request):
        return Response({"publicKey": b64encode(services.public_key()), "algorithm": "Ed25519"})
