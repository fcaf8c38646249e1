"""Device credentials: the salted token hash, Basic header parsing, and the one authenticator.

`authenticate_device` is the single place a device proves who it is; the DRF authentication class
below and the WebSocket upgrade both call it (docs/architecture.md §3).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.apps import apps
from django.db import connection
from rest_framework.authentication import BaseAuthentication

from signalserver.errors import BadRequest, Forbidden, Unauthorized
from signalserver.rows import RowLoader

LOCKED_PREFIX = "!"
HASH_VERSION = "2."
MAX_CREDENTIAL_LENGTH = 512  # longer usernames/passwords are refused before any hashing
MAX_BEARER_LENGTH = 2048


@dataclass(frozen=True, slots=True)
class SaltedTokenHash:
    """Fast HKDF-SHA256 hash of a high-entropy client-chosen token (docs/architecture.md §3)."""

    hash: str
    salt: str

    @classmethod
    def generate(cls, token: str) -> SaltedTokenHash:
        salt = secrets.token_hex(16)
        return cls(hash=_token_hash(token, salt), salt=salt)

    def verify(self, token: str) -> bool:
        # A locked credential ("!" prefix) can never match: the computed hash has no "!".
        return hmac.compare_digest(self.hash.encode(), _token_hash(token, self.salt).encode())


def _token_hash(token: str, salt: str) -> str:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt.encode(), info=b"authtoken").derive(
        token.encode()
    )
    return HASH_VERSION + derived.hex()


def parse_basic_header(header: str | None) -> tuple[str, str] | None:
    """(username, password) from `Authorization: Basic …`, or None when absent or malformed."""
    if not header or len(header) > 2 * MAX_CREDENTIAL_LENGTH:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    username, sep, password = decoded.partition(":")
    if not sep:
        return None
    return username, password


def parse_device_username(username: str) -> tuple[uuid.UUID, int] | None:
    """`{aci}` or `{aci}.{deviceId}` → (aci, device id); no device id means the primary (1)."""
    aci_text, sep, device_text = username.partition(".")
    try:
        aci = uuid.UUID(aci_text)
    except ValueError:
        return None
    if not sep:
        return aci, 1
    if not device_text.isdigit() or not 1 <= int(device_text) <= 127:
        return None
    return aci, int(device_text)


@dataclass(frozen=True, slots=True)
class AuthenticatedDevice:
    """What a request authenticated as: `request.user` and `request.auth` in DRF views."""

    account: object  # accounts.models.Account
    device: object  # accounts.models.Device
    is_authenticated: bool = True
    # The token family of the bearer token it authenticated with; None for device credentials.
    token_family: uuid.UUID | None = None

    @property
    def aci(self) -> uuid.UUID:
        return self.account.aci


def authenticate_device(username: str, password: str) -> AuthenticatedDevice | None:
    """The device behind Basic credentials, or None; refreshes its day-granular last-seen."""
    if len(username) > MAX_CREDENTIAL_LENGTH or len(password) > MAX_CREDENTIAL_LENGTH:
        return None
    parsed = parse_device_username(username)
    if parsed is None:
        return None
    aci, device_id = parsed
    device = _device_with_account(aci, device_id)
    if device is None:
        return None
    if not SaltedTokenHash(device.auth_token_hash, device.auth_salt).verify(password):
        return None
    refresh_last_seen(device)
    return AuthenticatedDevice(account=device.account, device=device)


@cache
def _device_rows() -> tuple[RowLoader, RowLoader, str]:
    # Looked up by name: this package imports no domain app; apps are loaded by the time anyone authenticates.
    Account, Device = apps.get_model("accounts", "Account"), apps.get_model("accounts", "Device")
    devices, accounts = RowLoader(Device), RowLoader(Account)
    account = Device._meta.get_field("account")
    sql = (
        f"SELECT {devices.columns('d')}, {accounts.columns('a')} FROM {Device._meta.db_table} d"
        f" JOIN {Account._meta.db_table} a ON a.{Account._meta.pk.column} = d.{account.column}"
        f" WHERE d.{account.column} = %s AND d.device_id = %s"
    )
    return devices, accounts, sql


def _device_with_account(aci: uuid.UUID, device_id: int):
    """The device and its account, as `select_related` would load them, in one query whose text is
    built once (every HTTP request authenticates: signalserver.rows)."""
    devices, accounts, sql = _device_rows()
    aci_value = devices.model._meta.get_field("account").target_field.get_db_prep_value(aci, connection)
    with connection.cursor() as cursor:
        cursor.execute(sql, [aci_value, device_id])
        row = cursor.fetchone()
    if row is None:
        return None
    device = devices.load(row[: len(devices)])
    device.account = accounts.load(row[len(devices) :])
    return device


def refresh_last_seen(device, now: datetime | None = None) -> None:
    """Keep `last_seen` at day granularity; the moment of the daily refresh is spread by ACI."""
    Device = apps.get_model("accounts", "Device")
    now = now or datetime.now(UTC)
    # Offset in [0, 1 day) derived from the ACI, so the refreshes of many accounts spread over the
    # day and the update time reveals nothing about when the device was really used.
    offset = timedelta(seconds=device.account_id.int % 86400)
    due_day: date = (now - offset).date()
    if device.last_seen is None or device.last_seen < due_day:
        today = now.date()
        Device.objects.filter(pk=device.pk).exclude(last_seen=today).update(last_seen=today)
        device.last_seen = today


# Bearer access tokens are the accounts app's (it registers their check in its `ready()`): a function
# from the token to an object with `.device` (its account loaded) and `.family`, or None.
_bearer_authenticator = None


def register_bearer_authenticator(authenticate) -> None:
    """Make `authenticate(token)` the check of `Authorization: Bearer …` (called by the accounts app)."""
    global _bearer_authenticator
    _bearer_authenticator = authenticate


class InvalidCredentials(Exception):
    """Credentials were presented but do not authenticate any device."""


class AccountBanned(Forbidden):
    """The credentials are right but an operator banned the account: every request is refused."""

    message = "Account banned"


def authenticate_authorization(header: str | None) -> AuthenticatedDevice | None:
    """The device an `Authorization` header authenticates, or None when it presents no credentials.

    Raises InvalidCredentials for credentials that are malformed or wrong. Every scheme a device may
    use (Basic device credentials, Bearer access tokens) is handled here, so REST and the WebSocket
    upgrade accept exactly the same credentials.
    """
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        bearer = None
        if _bearer_authenticator is not None and 0 < len(value) <= MAX_BEARER_LENGTH:
            bearer = _bearer_authenticator(value.strip())
        principal = None
        if bearer is not None:
            refresh_last_seen(bearer.device)
            principal = AuthenticatedDevice(
                account=bearer.device.account, device=bearer.device, token_family=bearer.family
            )
    else:
        credentials = parse_basic_header(header)
        principal = authenticate_device(*credentials) if credentials is not None else None
    if principal is None:
        raise InvalidCredentials()
    if principal.account.banned:
        raise AccountBanned()
    return principal


# A request tunnelled over a WebSocket carries the socket's principal in this attribute of the
# Django request (None on an unauthenticated socket); its own Authorization header is ignored.
TUNNEL_PRINCIPAL = "signal_tunnel_principal"
_NOT_TUNNELLED = object()


def carries_credentials(request) -> bool:
    """Whether a Django request comes with credentials, valid or not: an Authorization header over
    HTTP; when tunnelled, an authenticated socket (the frame's own header is not credentials)."""
    tunnelled = getattr(request, TUNNEL_PRINCIPAL, _NOT_TUNNELLED)
    if tunnelled is not _NOT_TUNNELLED:
        return tunnelled is not None
    return "HTTP_AUTHORIZATION" in request.META


class DeviceAuthentication(BaseAuthentication):
    """DRF authentication by device credentials, or by the WebSocket a request was tunnelled over."""

    def authenticate(self, request):
        tunnelled = getattr(request._request, TUNNEL_PRINCIPAL, _NOT_TUNNELLED)
        if tunnelled is not _NOT_TUNNELLED:
            return (tunnelled, tunnelled) if tunnelled is not None else None
        try:
            principal = authenticate_authorization(request.META.get("HTTP_AUTHORIZATION"))
        except InvalidCredentials:
            from rest_framework.exceptions import AuthenticationFailed

            raise AuthenticationFailed() from None
        return (principal, principal) if principal is not None else None

    def authenticate_header(self, request):
        return 'Basic realm="signal"'


UNIDENTIFIED_ACCESS_KEY_LENGTH = 16


def parse_access_key(value: str | None) -> bytes | None:
    """The 16 bytes of an `Unidentified-Access-Key` header; None when absent or malformed (either
    way the caller is not authorised by it: Signal's API answers a malformed key with 401)."""
    if not value:
        return None
    try:
        key = base64.b64decode(value.strip() + "=" * (-len(value.strip()) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return key if len(key) == UNIDENTIFIED_ACCESS_KEY_LENGTH else None


def optional_access(headers, *, authenticated: bool) -> tuple[bytes | None, str | None]:
    """(`Unidentified-Access-Key`, `Group-Send-Token`) of a read under Signal's optional access,
    both None when the caller is authenticated instead. One kind of
    authorization per request (400 for two); a malformed key is 401. The reader checks the token
    against its target (`groups.send_tokens`)."""
    header = headers.get("unidentified-access-key")  # Django's headers and a Call's: lower-case works for both
    token = headers.get("group-send-token")
    if sum(present for present in (header is not None, token is not None, authenticated)) > 1:
        raise BadRequest("use one kind of authorization")
    if token is not None:
        return None, token
    if header is None:
        return None, None
    access_key = parse_access_key(header)
    if access_key is None:
        raise Unauthorized()
    return access_key, None


def optional_access_key(headers, *, authenticated: bool) -> bytes | None:
    """`optional_access` for reads that take no group send token (a versioned profile): 401 for one."""
    access_key, token = optional_access(headers, authenticated=authenticated)
    if token is not None:
        raise Unauthorized()
    return access_key
