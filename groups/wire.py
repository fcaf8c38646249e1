"""The JSON of the group API (docs/architecture.md, "Groups"): Signal's `Group` and
`GroupChange.Actions` with the same field names, bytes as base64 and members as service ids in
clear, parsed strictly with plain functions (a 1,000-member body through DRF serializers costs
tens of milliseconds).

What the parsers return is already in the stored form: bytes as canonical (standard, padded)
base64 text, service ids in their canonical text, enums as upper-case names. Anything malformed,
unknown or too large is a 400, as Signal's group server answers it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from signalserver.errors import BadRequest
from signalserver.wire import ServiceId, b64decode, b64encode

# Sizes of the client-encrypted fields, in bytes. Title and description: the values Signal's group
# server is tested with (its production values are configuration, not published). Signal bounds
# neither the timer nor profile keys (zkgroup ciphertexts of fixed size); our clients encrypt both
# as small blobs (about 40 and 65 bytes), so these bounds are ours.
TITLE_MAX_BYTES = 1024
DESCRIPTION_MAX_BYTES = 8192
TIMER_MAX_BYTES = 128
PROFILE_KEY_MAX_BYTES = 128
PUBLIC_KEY_MAX_BYTES = 256  # zkgroup's group public params are 97 bytes; opaque to us
INVITE_LINK_PASSWORD_BYTES = 16
GROUP_ID_BYTES = 32
AVATAR_MAX_CHARS = 128
# A request body larger than this cannot be a valid group or change (1,000 members with every
# field at its largest is about 400 KB).
MAX_BODY_BYTES = 2 * 1024 * 1024

ADMINISTRATOR, DEFAULT = "ADMINISTRATOR", "DEFAULT"
ROLES = (DEFAULT, ADMINISTRATOR)
UNKNOWN, ANY, MEMBER, UNSATISFIABLE = "UNKNOWN", "ANY", "MEMBER", "UNSATISFIABLE"
ACCESS_REQUIRED = (UNKNOWN, ANY, MEMBER, ADMINISTRATOR, UNSATISFIABLE)


class InvalidGroupRequest(BadRequest):
    message = "Invalid group request"


Parser = Callable[[Any, str], Any]


def parse_body(body: bytes) -> dict:
    """The JSON object of a request body."""
    if len(body) > MAX_BODY_BYTES:
        raise InvalidGroupRequest("body too large")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("Malformed JSON") from None
    if not isinstance(data, dict):
        raise InvalidGroupRequest("the body must be a JSON object")
    return data


def decode_b64_any(text: str) -> bytes:
    """Standard or URL-safe base64, padded or not (paths, queries and headers carry either)."""
    return b64decode(text.replace("-", "+").replace("_", "/"))


# ---- field parsers: (value, where) -> stored form --------------------------------------------


def fail(where: str, problem: str):
    raise InvalidGroupRequest(f"{where} {problem}")


def bytes_field(max_bytes: int, *, allow_empty: bool = True) -> Parser:
    def parse(value, where):
        if value is None:
            value = ""
        if not isinstance(value, str) or len(value) > (max_bytes + 2) // 3 * 4 + 4:
            fail(where, f"must be base64 of at most {max_bytes} bytes")
        try:
            raw = b64decode(value)
        except ValueError:
            fail(where, "must be base64")
        if len(raw) > max_bytes:
            fail(where, f"must be at most {max_bytes} bytes")
        if not raw and not allow_empty:
            fail(where, "must not be empty")
        return b64encode(raw)

    return parse


def service_id(*, aci_only: bool) -> Parser:
    def parse(value, where):
        try:
            parsed = ServiceId.parse(value) if isinstance(value, str) and len(value) <= 40 else None
        except ValueError:
            parsed = None
        if parsed is None:
            fail(where, "must be a service id")
        if aci_only and parsed.is_pni:
            fail(where, "must be an ACI")
        return str(parsed)

    return parse


def enum(allowed: tuple[str, ...]) -> Parser:
    def parse(value, where):
        if isinstance(value, str) and value.upper() in allowed:
            return value.upper()
        fail(where, f"must be one of {', '.join(allowed)}")

    return parse


def boolean(value, where):
    if value is None:
        return False
    if not isinstance(value, bool):
        fail(where, "must be true or false")
    return value


def uint32(value, where):
    if type(value) is not int or not 0 <= value < 2**32:
        fail(where, "must be an integer from 0 to 2^32 - 1")
    return value


def avatar(value, where):
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > AVATAR_MAX_CHARS:
        fail(where, f"must be a string of at most {AVATAR_MAX_CHARS} characters")
    return value


def listing(item: Parser, max_items: Callable[[], int]) -> Parser:
    def parse(value, where):
        if value is None:
            return []
        if not isinstance(value, list):
            fail(where, "must be a list")
        if len(value) > max_items():
            fail(where, f"must have at most {max_items()} entries")
        return [item(entry, f"{where}[{index}]") for index, entry in enumerate(value)]

    return parse


def obj(fields: dict[str, Parser], *, required: tuple[str, ...] = ()) -> Parser:
    """A JSON object of exactly these fields (absent or null ones are left out): anything else
    in it is refused, as Signal refuses unknown protobuf fields."""

    def parse(value, where):
        if not isinstance(value, dict):
            fail(where or "body", "must be an object")
        unknown = [name for name in value if name not in fields]
        if unknown:
            fail(f"{where}.{unknown[0]}" if where else unknown[0], "is not a known field")
        parsed = {}
        for name, parser in fields.items():
            if value.get(name) is not None:
                parsed[name] = parser(value[name], f"{where}.{name}" if where else name)
            elif name in required:
                fail(f"{where}.{name}" if where else name, "is required")
        return parsed

    return parse


# ---- the shapes ---------------------------------------------------------------------------------


def max_group_size() -> int:
    from django.conf import settings

    return settings.GROUP_MAX_SIZE


ROLE = enum(ROLES)
ACI = service_id(aci_only=True)
ANY_SERVICE_ID = service_id(aci_only=False)
PROFILE_KEY = bytes_field(PROFILE_KEY_MAX_BYTES, allow_empty=False)
INVITE_LINK_PASSWORD = bytes_field(INVITE_LINK_PASSWORD_BYTES)


def _members(item: Parser) -> Parser:
    return listing(item, max_group_size)


ACCESS_CONTROL = obj(
    {"attributes": enum(ACCESS_REQUIRED), "members": enum(ACCESS_REQUIRED), "addFromInviteLink": enum(ACCESS_REQUIRED)},
    required=("attributes", "members"),
)

# PUT /v2/groups: the initial state. The server fills joinedAtVersion, addedByUserId and timestamps;
# a new group has no join requests and no bans.
NEW_GROUP = obj(
    {
        "publicKey": bytes_field(PUBLIC_KEY_MAX_BYTES, allow_empty=False),
        "version": uint32,
        "title": bytes_field(TITLE_MAX_BYTES, allow_empty=False),
        "description": bytes_field(DESCRIPTION_MAX_BYTES),
        "avatar": avatar,
        "disappearingMessagesTimer": bytes_field(TIMER_MAX_BYTES),
        "accessControl": ACCESS_CONTROL,
        "members": _members(obj({"userId": ACI, "role": ROLE, "profileKey": PROFILE_KEY}, required=("userId", "role", "profileKey"))),
        "membersPendingProfileKey": _members(
            obj({"member": obj({"userId": ANY_SERVICE_ID, "role": ROLE}, required=("userId", "role"))}, required=("member",))
        ),
        "membersPendingAdminApproval": listing(lambda value, where: fail(where, "must be empty in a new group"), max_group_size),
        "membersBanned": listing(lambda value, where: fail(where, "must be empty in a new group"), max_group_size),
        "inviteLinkPassword": INVITE_LINK_PASSWORD,
        "announcementsOnly": boolean,
    },
    required=("publicKey", "title", "accessControl", "members"),
)

# PATCH /v2/groups: GroupChange.Actions. The server fills sourceUuid, groupId, joinedAtVersion,
# addedByUserId, joinFromInviteLink and timestamps; the caller's own entries (accepting an
# invitation, asking to join, a new profile key) name no user, the credentials do.
_DELETED = obj({"deletedUserId": ANY_SERVICE_ID}, required=("deletedUserId",))
_OWN_PROFILE_KEY = obj({"profileKey": PROFILE_KEY}, required=("profileKey",))
ACTIONS = obj(
    {
        "version": uint32,
        "addMembers": _members(
            obj(
                {"added": obj({"userId": ACI, "role": ROLE, "profileKey": PROFILE_KEY}, required=("userId", "role", "profileKey"))},
                required=("added",),
            )
        ),
        "deleteMembers": _members(obj({"deletedUserId": ACI}, required=("deletedUserId",))),
        "modifyMemberRoles": _members(obj({"userId": ACI, "role": ROLE}, required=("userId", "role"))),
        "modifyMemberProfileKeys": _members(_OWN_PROFILE_KEY),
        "addMembersPendingProfileKey": _members(
            obj(
                {"added": obj({"member": obj({"userId": ANY_SERVICE_ID, "role": ROLE}, required=("userId", "role"))}, required=("member",))},
                required=("added",),
            )
        ),
        "deleteMembersPendingProfileKey": _members(_DELETED),
        "promoteMembersPendingProfileKey": _members(_OWN_PROFILE_KEY),
        "modifyTitle": obj({"title": bytes_field(TITLE_MAX_BYTES, allow_empty=False)}, required=("title",)),
        "modifyAvatar": obj({"avatar": avatar}),
        "modifyDisappearingMessageTimer": obj({"timer": bytes_field(TIMER_MAX_BYTES)}),
        "modifyAttributesAccess": obj({"attributesAccess": enum((MEMBER, ADMINISTRATOR))}, required=("attributesAccess",)),
        "modifyMemberAccess": obj({"membersAccess": enum((MEMBER, ADMINISTRATOR))}, required=("membersAccess",)),
        "modifyAddFromInviteLinkAccess": obj(
            {"addFromInviteLinkAccess": enum((ANY, ADMINISTRATOR, UNSATISFIABLE))}, required=("addFromInviteLinkAccess",)
        ),
        "addMembersPendingAdminApproval": _members(obj({"added": _OWN_PROFILE_KEY}, required=("added",))),
        "deleteMembersPendingAdminApproval": _members(_DELETED),
        "promoteMembersPendingAdminApproval": _members(obj({"userId": ACI, "role": ROLE}, required=("userId", "role"))),
        "modifyInviteLinkPassword": obj({"inviteLinkPassword": INVITE_LINK_PASSWORD}),
        "modifyDescription": obj({"description": bytes_field(DESCRIPTION_MAX_BYTES)}),
        "modifyAnnouncementsOnly": obj({"announcementsOnly": boolean}),
        "addMembersBanned": _members(obj({"added": obj({"userId": ANY_SERVICE_ID}, required=("userId",))}, required=("added",))),
        "deleteMembersBanned": _members(_DELETED),
        "promoteMembersPendingPniAciProfileKey": _members(_OWN_PROFILE_KEY),
    },
    required=("version",),
)


def parse_new_group(body: bytes) -> dict:
    return NEW_GROUP(parse_body(body), "")


def parse_actions(body: bytes) -> dict:
    return ACTIONS(parse_body(body), "")
