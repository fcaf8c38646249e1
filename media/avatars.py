"""Avatar upload forms: an S3 POST policy, signed with AWS Signature Version 4, that
lets a client put one object, a profile's or a group's encrypted avatar, under a random key, of
1 byte up to the avatar's limit, within half an hour, and nothing else. The profile and group
services hand the form to the client as it is; the client posts it to the avatars' CDN
(AVATARS_CDN_URL) and later fetches `<cdn>/<key>`.

With an S3 store (MEDIA_S3_BUCKET) the form is signed with the bucket's own access key, and S3
checks it. The embedded run has no S3: the form is then signed with a key derived from SECRET_KEY
for the bucket "local", and this server takes the POST at /media and serves the avatars at
/media/<key> (the views at the end), checking the form as S3 would, so a client cannot tell the
two apart.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation
from django.core.files.uploadedfile import UploadedFile
from django.http import FileResponse, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.views.decorators.csrf import csrf_exempt

from media import store
from signalserver.crypto import server_key
from signalserver.errors import DomainError, NotFound, json_error

MiB = 1024 * 1024
PROFILE_AVATAR_MAX_BYTES = 10 * MiB
GROUP_AVATAR_MAX_BYTES = 3 * MiB
FORM_SECONDS = 30 * 60
ALGORITHM = "AWS4-HMAC-SHA256"
ACL = "private"
PREFIX = re.compile(r"^[a-z0-9-]+$")

# The embedded run's stand-in for a bucket and its key (the secret: local_secret()).
LOCAL_BUCKET = "local"
LOCAL_ACCESS_KEY_ID = "local"
LOCAL_PATH = "/media"
# What the local endpoint stores and serves: the keys upload_form makes for the two avatar kinds.
LOCAL_KEY = re.compile(r"^(?:profiles|groups)/[A-Za-z0-9_-]{22}$")
# A request body may exceed the largest avatar by the multipart framing and the form's fields.
BODY_ALLOWANCE = 16 * 1024
LARGEST_BODY = max(PROFILE_AVATAR_MAX_BYTES, GROUP_AVATAR_MAX_BYTES) + BODY_ALLOWANCE


# --- forms ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signer:
    access_key_id: str
    secret_access_key: str
    region: str
    bucket: str


def signer() -> Signer:
    """Who signs the forms: the S3 bucket's key, or on the embedded run the local one (also what
    the local endpoint checks against)."""
    if not settings.MEDIA_S3_BUCKET:
        return Signer(LOCAL_ACCESS_KEY_ID, local_secret(), settings.MEDIA_S3_REGION, LOCAL_BUCKET)
    if not (settings.MEDIA_S3_ACCESS_KEY_ID and settings.MEDIA_S3_SECRET_ACCESS_KEY):
        # The form has no field for a session token, so credentials of an instance role cannot sign it.
        raise ImproperlyConfigured("Avatar upload forms need MEDIA_S3_ACCESS_KEY_ID and MEDIA_S3_SECRET_ACCESS_KEY")
    return Signer(
        settings.MEDIA_S3_ACCESS_KEY_ID, settings.MEDIA_S3_SECRET_ACCESS_KEY, settings.MEDIA_S3_REGION, settings.MEDIA_S3_BUCKET
    )


def local_secret() -> str:
    return server_key("media post policy").hex()


def new_key(prefix: str) -> str:
    """`<prefix>/` and 16 random bytes, URL-safe base64 without padding (22 characters)."""
    return f"{prefix}/{base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b'=').decode()}"


def upload_form(prefix: str, max_bytes: int) -> dict:
    """A form to upload one object of 1 to `max_bytes` bytes under a new key in `prefix`, for
    FORM_SECONDS, in the JSON shape clients read."""
    if not PREFIX.match(prefix) or max_bytes < 1:
        raise ValueError("a prefix is one lower-case path segment, and max_bytes positive")
    by = signer()
    now = datetime.now(timezone.utc).replace(microsecond=0)
    date = now.strftime("%Y%m%dT%H%M%SZ")
    credential = f"{by.access_key_id}/{date[:8]}/{by.region}/s3/aws4_request"
    key = new_key(prefix)
    conditions = [
        {"bucket": by.bucket},
        {"key": key},
        {"acl": ACL},
        ["starts-with", "$Content-Type", ""],
        ["content-length-range", 1, max_bytes],
        {"x-amz-credential": credential},
        {"x-amz-algorithm": ALGORITHM},
        {"x-amz-date": date},
    ]
    expiration = (now + timedelta(seconds=FORM_SECONDS)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    policy = base64.b64encode(json.dumps({"expiration": expiration, "conditions": conditions}).encode()).decode()
    return {
        "key": key,
        "credential": credential,
        "acl": ACL,
        "algorithm": ALGORITHM,
        "date": date,
        "policy": policy,
        "signature": sign(policy, secret=by.secret_access_key, day=date[:8], region=by.region),
    }


def profile_avatar_form() -> dict:
    return upload_form("profiles", PROFILE_AVATAR_MAX_BYTES)


def group_avatar_form() -> dict:
    return upload_form("groups", GROUP_AVATAR_MAX_BYTES)


def sign(policy: str, *, secret: str, day: str, region: str) -> str:
    """The SigV4 signature of a base64 POST policy: the policy itself is the string to sign, under
    the key chained from the secret through the day, region, service and terminator."""
    key = ("AWS4" + secret).encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, policy.encode(), hashlib.sha256).hexdigest()


def form_fields(form: dict) -> dict:
    """The multipart fields a client posts for `form`, before its own `Content-Type` and `file`."""
    return {
        "key": form["key"],
        "x-amz-credential": form["credential"],
        "acl": form["acl"],
        "x-amz-algorithm": form["algorithm"],
        "x-amz-date": form["date"],
        "policy": form["policy"],
        "x-amz-signature": form["signature"],
    }


def cdn_url(base_url: str) -> str:
    """Where clients post the forms and fetch `<cdn url>/<key>`, without a trailing slash:
    AVATARS_CDN_URL, else the bucket's URL, else this server's /media (`base_url`: this server)."""
    if settings.AVATARS_CDN_URL:
        return settings.AVATARS_CDN_URL.rstrip("/")
    if settings.MEDIA_S3_BUCKET:
        return _bucket_url()
    return base_url.rstrip("/") + LOCAL_PATH


def _bucket_url() -> str:
    bucket = settings.MEDIA_S3_BUCKET
    endpoint = (settings.MEDIA_S3_ENDPOINT_URL or f"https://s3.{settings.MEDIA_S3_REGION}.amazonaws.com").rstrip("/")
    if settings.MEDIA_S3_ADDRESSING_STYLE == "virtual":
        scheme, _, host = endpoint.partition("://")
        return f"{scheme}://{bucket}.{host}"
    return f"{endpoint}/{bucket}"


# --- the embedded run's stand-in for S3: POST /media, GET /media/<key> ---------------------------

# Form fields outside the policy's conditions (as in S3; so are fields named x-ignore-*).
UNSIGNED_FIELDS = {"policy", "x-amz-signature"}
REQUIRED_FIELDS = {"key", "policy", "x-amz-signature", "x-amz-credential", "x-amz-algorithm", "x-amz-date"}


class Refused(DomainError):
    """An upload the local endpoint refuses, with the status S3 gives the same refusal."""

    def __init__(self, status: int, message: str, *, headers: dict | None = None):
        super().__init__(message, headers=headers)
        self.status = status


@csrf_exempt
def post_view(request):
    """`POST /media`: an avatar form's multipart upload, stored once it passes every check S3
    makes of a POST policy; 204 as from S3."""
    try:
        if request.method != "POST":
            raise Refused(405, "Method not allowed", headers={"Allow": "POST"})
        _require_local()
        _check_content_length(request.META.get("CONTENT_LENGTH"))
        fields, upload = _read_form(request)
        conditions = _verified_policy(fields)
        _check_conditions(conditions, fields, upload.size)
        if not LOCAL_KEY.match(fields["key"]):
            raise Refused(403, "This server keeps only avatars")
        store.storage().save(fields["key"], upload)
    except DomainError as error:
        return json_error(error)
    return HttpResponse(status=204)


def avatar_view(request, key: str):
    """`GET /media/<key>`: a stored avatar, always as application/octet-stream (avatars are
    encrypted; whatever Content-Type the form carried, nothing served here renders as a page)."""
    try:
        if request.method not in ("GET", "HEAD"):
            raise Refused(405, "Method not allowed", headers={"Allow": "GET, HEAD"})
        _require_local()
        if not LOCAL_KEY.match(key):  # also: no path outside the two folders, no "..", no "//"
            raise NotFound()
        try:
            file = store.storage().open(key, "rb")
        except FileNotFoundError:
            raise NotFound() from None
    except DomainError as error:
        return json_error(error)
    return FileResponse(file, content_type="application/octet-stream")


def refused_unread(scope) -> bool:
    """An avatar POST to /media whose declared body could not hold a valid avatar: the ASGI app
    refuses it before Django reads the body (which Django does whole, to a temporary file, before
    any view runs)."""
    if scope["method"] != "POST" or scope["path"].rstrip("/") != LOCAL_PATH:
        return False
    length = dict(scope["headers"]).get(b"content-length", b"")
    return length.isdigit() and int(length) > LARGEST_BODY


def _require_local() -> None:
    """With an S3 store the forms name the bucket, and nothing here may take or serve them."""
    if settings.MEDIA_S3_BUCKET:
        raise NotFound()


def _check_content_length(value: str | None) -> None:
    """Before the body is parsed: a body that cannot hold a valid avatar is refused unread."""
    if not value or not value.isdigit():
        raise Refused(411, "Content-Length required")
    if int(value) > LARGEST_BODY:
        raise Refused(400, "EntityTooLarge: the upload exceeds the largest avatar")


def _read_form(request) -> tuple[dict[str, str], UploadedFile]:
    """The form's fields, by lower-case name (S3 compares names so), and its one file."""
    if request.content_type != "multipart/form-data":
        raise Refused(400, "The body must be multipart/form-data")
    try:
        data, files = request.POST, request.FILES
    except (MultiPartParserError, SuspiciousOperation):
        raise Refused(400, "Malformed multipart/form-data") from None
    fields: dict[str, str] = {}
    for name, values in data.lists():
        if len(values) != 1 or name.lower() in fields:
            raise Refused(400, "A form field is repeated")
        fields[name.lower()] = values[0]
    if list(files) != ["file"] or len(files.getlist("file")) != 1:
        raise Refused(400, "The form must end with one file, in the field file, with a filename")
    missing = REQUIRED_FIELDS - set(fields)
    if missing:
        raise Refused(400, f"Missing form fields: {', '.join(sorted(missing))}")
    return fields, files["file"]


def _verified_policy(fields: dict[str, str]) -> list:
    """The policy's conditions, once its algorithm, credential, signature and expiration hold."""
    if fields["x-amz-algorithm"] != ALGORITHM:
        raise Refused(400, f"x-amz-algorithm must be {ALGORITHM}")
    local = signer()
    access_key_id, _, scope = fields["x-amz-credential"].partition("/")
    day, _, rest = scope.partition("/")
    if access_key_id != local.access_key_id or not re.fullmatch(r"\d{8}", day) or rest != f"{local.region}/s3/aws4_request":
        raise Refused(403, "InvalidAccessKeyId: the credential is not this server's")
    expected = sign(fields["policy"], secret=local.secret_access_key, day=day, region=local.region)
    if not hmac.compare_digest(expected.encode(), fields["x-amz-signature"].encode()):
        raise Refused(403, "SignatureDoesNotMatch")
    try:
        policy = json.loads(base64.b64decode(fields["policy"], validate=True))
        conditions, expiration = policy["conditions"], datetime.fromisoformat(policy["expiration"])
    except (ValueError, TypeError, KeyError):
        raise Refused(400, "Malformed policy") from None
    if not isinstance(conditions, list) or expiration.tzinfo is None:
        raise Refused(400, "Malformed policy")
    if expiration <= datetime.now(timezone.utc):
        raise Refused(403, "AccessDenied: the policy expired")
    return conditions


def _check_conditions(conditions: list, fields: dict[str, str], size: int) -> None:
    """Every condition holds, and every field but the unsigned ones is named by a condition (AWS
    refuses fields the policy does not mention; SeaweedFS only x-amz-* ones)."""
    values = {**fields, "bucket": LOCAL_BUCKET}  # S3 takes the bucket from the URL
    covered = set()
    for condition in conditions:
        kind, name, expected = _condition(condition)
        if kind == "content-length-range":
            _check_size(size, *expected)
            continue
        value = values.get(name)
        if value is None or not (value == expected if kind == "eq" else value.startswith(expected)):
            raise Refused(403, f"AccessDenied: the policy's condition on {name} failed")
        covered.add(name)
    extra = {name for name in fields if name not in covered | UNSIGNED_FIELDS and not name.startswith("x-ignore-")}
    if extra:
        raise Refused(403, f"AccessDenied: fields the policy does not name: {', '.join(sorted(extra))}")


def _condition(condition) -> tuple[str, str, object]:
    """(kind, field name, expected) of `{"name": value}`, `["eq" | "starts-with", "$name", value]`
    or `["content-length-range", min, max]` (expected: (min, max))."""
    if isinstance(condition, dict) and len(condition) == 1:
        [(name, value)] = condition.items()
        if isinstance(value, str):
            return "eq", name.lower(), value
    elif isinstance(condition, list) and len(condition) == 3 and isinstance(condition[0], str):
        kind, first, second = condition[0].lower(), condition[1], condition[2]
        if kind == "content-length-range" and all(type(bound) is int for bound in (first, second)):
            return kind, "", (first, second)
        if kind in ("eq", "starts-with") and isinstance(first, str) and first.startswith("$") and isinstance(second, str):
            return kind, first[1:].lower(), second
    raise Refused(400, "Malformed policy condition")


def _check_size(size: int, smallest: int, largest: int) -> None:
    if size < smallest:
        raise Refused(400, "EntityTooSmall: the upload is smaller than the policy allows")
    if size > largest:
        raise Refused(400, "EntityTooLarge: the upload is larger than the policy allows")
