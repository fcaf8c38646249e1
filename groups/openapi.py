"""OpenAPI descriptions of the group API's bodies (the parsers are in groups.wire)."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

from groups.wire import ACCESS_REQUIRED, DESCRIPTION_MAX_BYTES, PROFILE_KEY_MAX_BYTES, TIMER_MAX_BYTES, TITLE_MAX_BYTES, ROLES
from signalserver.schema import ErrorSerializer

B64 = {"type": "string", "format": "byte"}
SERVICE_ID = {"type": "string", "description": "a service id in clear: an ACI, or `PNI:<uuid>`"}
ACI = {"type": "string", "format": "uuid", "description": "an ACI in clear"}
ROLE = {"type": "string", "enum": list(ROLES), "description": "case-insensitive on input"}
ACCESS = {"type": "string", "enum": list(ACCESS_REQUIRED), "description": "case-insensitive on input"}
UINT = {"type": "integer", "minimum": 0}
MS = {"type": "integer", "description": "ms since the epoch, set by the server"}


def _b64(description: str) -> dict:
    return {**B64, "description": description}


def _object(properties: dict, required: tuple[str, ...] = ()) -> dict:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


MEMBER = _object(
    {"userId": ACI, "role": ROLE, "profileKey": _b64(f"encrypted profile key, at most {PROFILE_KEY_MAX_BYTES} bytes"), "joinedAtVersion": UINT},
    ("userId", "role", "profileKey", "joinedAtVersion"),
)
PENDING_MEMBER = _object(
    {
        "member": _object({"userId": SERVICE_ID, "role": ROLE, "joinedAtVersion": UINT}, ("userId", "role", "joinedAtVersion")),
        "addedByUserId": ACI,
        "timestamp": MS,
    },
    ("member", "addedByUserId", "timestamp"),
)
REQUESTING_MEMBER = _object({"userId": ACI, "profileKey": B64, "timestamp": MS}, ("userId", "profileKey", "timestamp"))
BANNED_MEMBER = _object({"userId": SERVICE_ID, "timestamp": MS}, ("userId", "timestamp"))
ACCESS_CONTROL = _object({"attributes": ACCESS, "members": ACCESS, "addFromInviteLink": ACCESS}, ("attributes", "members", "addFromInviteLink"))

GROUP = {
    **_object(
        {
            "publicKey": _b64("the group's public params, opaque to the server"),
            "title": _b64(f"encrypted title, 1 to {TITLE_MAX_BYTES} bytes"),
            "description": _b64(f"encrypted description, at most {DESCRIPTION_MAX_BYTES} bytes; empty: none"),
            "avatar": {"type": "string", "description": "`groups/...` key of the encrypted avatar (from the avatar form); empty: none"},
            "disappearingMessagesTimer": _b64(f"encrypted timer, at most {TIMER_MAX_BYTES} bytes; empty: none"),
            "accessControl": ACCESS_CONTROL,
            "version": UINT,
            "members": {"type": "array", "items": MEMBER},
            "membersPendingProfileKey": {"type": "array", "items": PENDING_MEMBER, "description": "invited"},
            "membersPendingAdminApproval": {"type": "array", "items": REQUESTING_MEMBER, "description": "asking to join"},
            "inviteLinkPassword": _b64("16 bytes, or empty: no invite link"),
            "announcementsOnly": {"type": "boolean"},
            "membersBanned": {"type": "array", "items": BANNED_MEMBER},
        },
        tuple(
            "publicKey title description avatar disappearingMessagesTimer accessControl version members "
            "membersPendingProfileKey membersPendingAdminApproval inviteLinkPassword announcementsOnly membersBanned".split()
        ),
    ),
    "description": "Signal's `Group`, members in clear",
}

NEW_GROUP = _object(
    {
        "publicKey": B64,
        "version": {"type": "integer", "enum": [0]},
        "title": GROUP["properties"]["title"],
        "description": GROUP["properties"]["description"],
        "avatar": GROUP["properties"]["avatar"],
        "disappearingMessagesTimer": GROUP["properties"]["disappearingMessagesTimer"],
        "accessControl": _object({"attributes": ACCESS, "members": ACCESS, "addFromInviteLink": ACCESS}, ("attributes", "members")),
        "members": {
            "type": "array",
            "items": _object({"userId": ACI, "role": ROLE, "profileKey": B64}, ("userId", "role", "profileKey")),
            "description": "the creator among them, as ADMINISTRATOR",
        },
        "membersPendingProfileKey": {
            "type": "array",
            "items": _object({"member": _object({"userId": SERVICE_ID, "role": ROLE}, ("userId", "role"))}, ("member",)),
        },
        "inviteLinkPassword": GROUP["properties"]["inviteLinkPassword"],
        "announcementsOnly": {"type": "boolean"},
    },
    ("publicKey", "title", "accessControl", "members"),
)


def _list(item: dict) -> dict:
    return {"type": "array", "items": item}


_DELETED = _object({"deletedUserId": SERVICE_ID}, ("deletedUserId",))
_OWN_PROFILE_KEY = _object({"profileKey": B64}, ("profileKey",))
ACTIONS = {
    **_object(
        {
            "version": {**UINT, "description": "the group's current version + 1"},
            "addMembers": _list(_object({"added": _object({"userId": ACI, "role": ROLE, "profileKey": B64}, ("userId", "role", "profileKey"))}, ("added",))),
            "deleteMembers": _list(_object({"deletedUserId": ACI}, ("deletedUserId",))),
            "modifyMemberRoles": _list(_object({"userId": ACI, "role": ROLE}, ("userId", "role"))),
            "modifyMemberProfileKeys": _list(_OWN_PROFILE_KEY),
            "addMembersPendingProfileKey": _list(
                _object({"added": _object({"member": _object({"userId": SERVICE_ID, "role": ROLE}, ("userId", "role"))}, ("member",))}, ("added",))
            ),
            "deleteMembersPendingProfileKey": _list(_DELETED),
            "promoteMembersPendingProfileKey": _list(_OWN_PROFILE_KEY),
            "modifyTitle": _object({"title": B64}, ("title",)),
            "modifyAvatar": _object({"avatar": {"type": "string"}}),
            "modifyDisappearingMessageTimer": _object({"timer": B64}),
            "modifyAttributesAccess": _object({"attributesAccess": ACCESS}, ("attributesAccess",)),
            "modifyMemberAccess": _object({"membersAccess": ACCESS}, ("membersAccess",)),
            "modifyAddFromInviteLinkAccess": _object({"addFromInviteLinkAccess": ACCESS}, ("addFromInviteLinkAccess",)),
            "addMembersPendingAdminApproval": _list(_object({"added": _OWN_PROFILE_KEY}, ("added",))),
            "deleteMembersPendingAdminApproval": _list(_DELETED),
            "promoteMembersPendingAdminApproval": _list(_object({"userId": ACI, "role": ROLE}, ("userId", "role"))),
            "modifyInviteLinkPassword": _object({"inviteLinkPassword": B64}),
            "modifyDescription": _object({"description": B64}),
            "modifyAnnouncementsOnly": _object({"announcementsOnly": {"type": "boolean"}}),
            "addMembersBanned": _list(_object({"added": _object({"userId": SERVICE_ID}, ("userId",))}, ("added",))),
            "deleteMembersBanned": _list(_DELETED),
            "promoteMembersPendingPniAciProfileKey": _list(_OWN_PROFILE_KEY),
        },
        ("version",),
    ),
    "description": (
        "Signal's `GroupChange.Actions`. The caller's own entries (accepting an invitation, asking to "
        "join, a new profile key) name no user: the credentials do. The server adds `groupId`, "
        "`sourceUuid`, `joinedAtVersion`, `addedByUserId`, `joinFromInviteLink` and timestamps to the "
        "change it signs. Any other field is refused (400)."
    ),
}

GROUP_CHANGE = _object(
    {
        "actions": _b64("the change as the server signed it: canonical JSON (sorted keys) of the actions, with `groupId` and `sourceUuid` (absent when the server made the change: a deleted account leaving every list)"),
        "serverSignature": _b64("Ed25519 over the bytes of `actions`; the key is at GET /v2/groups/public_key"),
        "changeEpoch": {**UINT, "description": "the lowest client feature level that understands the change (1 invite links ... 5 PNI acceptance)"},
    },
    ("actions", "serverSignature", "changeEpoch"),
)
SEND_ENDORSEMENTS = {
    "type": "object",
    "nullable": True,
    "description": "Group send endorsements and a token for the other full members (for full members only; null otherwise)",
    "properties": {
        "expiration": {"type": "integer", "description": "epoch seconds"},
        "endorsements": _list({"type": "object", "properties": {"serviceId": SERVICE_ID, "endorsement": B64}}),
        "token": _b64("for `Group-Send-Token`: every full member but the caller"),
    },
}
GROUP_RESPONSE = _object({"group": GROUP, "groupSendEndorsements": SEND_ENDORSEMENTS}, ("group", "groupSendEndorsements"))
CHANGE_RESPONSE = _object({"groupChange": GROUP_CHANGE, "groupSendEndorsements": SEND_ENDORSEMENTS}, ("groupChange", "groupSendEndorsements"))
LOG_RESPONSE = _object(
    {
        "groupChanges": _list(
            _object({"groupChange": GROUP_CHANGE, "groupState": {**GROUP, "nullable": True}}, ("groupChange", "groupState"))
        ),
        "groupSendEndorsements": SEND_ENDORSEMENTS,
    },
    ("groupChanges", "groupSendEndorsements"),
)
JOIN_INFO = _object(
    {
        "publicKey": B64,
        "title": B64,
        "description": B64,
        "avatar": {"type": "string"},
        "memberCount": UINT,
        "addFromInviteLink": ACCESS,
        "version": UINT,
        "pendingAdminApproval": {"type": "boolean", "description": "the caller is asking to join"},
        "pendingAdminApprovalFull": {"type": "boolean", "description": "no room for more join requests"},
    },
    ("publicKey", "title", "description", "avatar", "memberCount", "addFromInviteLink", "version", "pendingAdminApproval", "pendingAdminApprovalFull"),
)
AVATAR_FORM = _object(
    {name: {"type": "string"} for name in ("key", "credential", "acl", "algorithm", "date", "policy", "signature")},
    ("key", "credential", "acl", "algorithm", "date", "policy", "signature"),
)
PUBLIC_KEY = _object(
    {"publicKey": _b64("32-byte Ed25519 public key"), "algorithm": {"type": "string", "enum": ["Ed25519"]}}, ("publicKey", "algorithm")
)

GROUP_ID = OpenApiParameter(
    "X-Group-Id",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=True,
    description="The group's 32-byte identifier (clients derive it from the master key), base64 (standard or URL-safe)",
)
FORBIDDEN_REASON = OpenApiParameter(
    "X-Signal-Forbidden-Reason",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="`banned` when the caller is banned from the group",
    response=[403],
)
CONTENT_RANGE = OpenApiParameter(
    "Content-Range",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="`versions <from>-<to>/<latest>` on a partial page",
    response=[206],
)
NO_GROUP = OpenApiResponse(ErrorSerializer, description="No group with this id")
BAD_GROUP_ID = "`X-Group-Id` is not base64 of 32 bytes"
TRADE_OFF = (
    "**signalserver extension** of Signal's group server (which speaks protobuf and zkgroup): the same "
    "model, rules and field names, in JSON. The group is named by `X-Group-Id`; callers authenticate "
    "with device credentials, and members are service ids in clear: without zkgroup the server sees who "
    "is in which group (title, description, timer, avatar and profile keys stay client-encrypted). "
)
