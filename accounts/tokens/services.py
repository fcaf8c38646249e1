"""Bearer tokens for devices (our extension): a 1-hour access token (JWT, HS256) and a 30-day
refresh token that rotates on every use; reusing a spent one revokes the whole token family.

An access token names the device row (not just ACI and device id, which a re-registered or
re-linked device reuses), its token family, and a keyed fingerprint of the device's credential
hash. Removing the device (its row and, by cascade, its families go), revoking the family, or
changing or locking the device's password therefore ends the token, and checking all of that costs
the one query authentication makes anyway: the device row joined to its family row.

Refresh tokens are opaque random strings; only their SHA-256 is stored. Spent ones are kept until
they expire so that a second use can be recognised as theft. Expiries are kept to the day (rounded
up: a refresh token lasts 30 to 31 days), so the rows do not record when a device logged in or
refreshed (docs/privacy.md).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from django.db import transaction

from accounts.models import Device, RefreshToken, TokenFamily
from accounts.services import disconnect_devices
from signalserver.crypto import server_key
from signalserver.errors import Unauthorized
from signalserver.timestamps import end_of_day

ACCESS_TOKEN_LIFETIME = timedelta(hours=1)
REFRESH_TOKEN_LIFETIME = timedelta(days=30)
ALGORITHM = "HS256"
ISSUER = "signalserver"
# Logins (token families) one device may hold at once; a new login beyond that ends the oldest,
# so a device cannot grow its rows without bound by logging in again and again.
MAX_FAMILIES_PER_DEVICE = 10
REQUIRED_CLAIMS = ["iss", "iat", "exp", "sub", "dev", "dpk", "cf", "fam"]


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


def _keys() -> tuple[bytes, bytes]:
    """(JWT signing key, credential-fingerprint key), both derived from SECRET_KEY.

    Rotating SECRET_KEY therefore ends every access token (refresh tokens are not derived from it).
    """
    derived = server_key("bearer tokens", 64)
    return derived[:32], derived[32:]


def signing_key() -> bytes:
    return _keys()[0]


def credential_fingerprint(device: Device) -> str:
    """Changes whenever the device's password does (and when it is locked).

    Keyed, so the fingerprint readable in a token says nothing about the stored hash.
    """
    mac = hmac.new(_keys()[1], device.auth_token_hash.encode(), hashlib.sha256)
    return mac.hexdigest()[:16]


def _hash(refresh_token: str) -> bytes:
    return hashlib.sha256(refresh_token.encode()).digest()


def _moment(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)


def _refresh_expiry(now: float) -> datetime:
    return end_of_day(_moment(now) + REFRESH_TOKEN_LIFETIME)


def encode_access_token(device: Device, family: uuid.UUID, *, now: float) -> str:
    """The access token of a device in a family, issued at `now` (seconds since the epoch)."""
    claims = {
        "iss": ISSUER,
        "sub": str(device.account_id),
        "dev": device.device_id,
        "dpk": device.pk,
        "cf": credential_fingerprint(device),
        "fam": str(family),
        "iat": int(now),
        "exp": int(now + ACCESS_TOKEN_LIFETIME.total_seconds()),
    }
    return jwt.encode(claims, signing_key(), algorithm=ALGORITHM)


def _pair(device: Device, family: TokenFamily, now: float) -> TokenPair:
    refresh_token = secrets.token_urlsafe(32)
    RefreshToken.objects.create(token_hash=_hash(refresh_token), family=family, expires_at=_refresh_expiry(now))
    return TokenPair(
        encode_access_token(device, family.pk, now=now), refresh_token, int(ACCESS_TOKEN_LIFETIME.total_seconds())
    )


@transaction.atomic
def issue_tokens(*, device: Device, now: float | None = None) -> TokenPair:
    """`POST /v1/auth/token`: a new token family for a device that proved its credentials."""
    now = time.time() if now is None else now
    # Housekeeping of this device's logins, here rather than in a periodic job: expired families
    # go, and so do the oldest beyond the limit.
    TokenFamily.objects.filter(device=device, expires_at__lt=_moment(now)).delete()
    serials = list(TokenFamily.objects.filter(device=device).order_by("-serial").values_list("serial", flat=True))
    TokenFamily.objects.filter(device=device, serial__in=serials[MAX_FAMILIES_PER_DEVICE - 1 :]).delete()
    family = TokenFamily.objects.create(
        device=device,
        credential_fingerprint=credential_fingerprint(device),
        serial=(serials[0] if serials else 0) + 1,
        expires_at=_refresh_expiry(now),
    )
    return _pair(device, family, now)


def refresh_tokens(*, refresh_token: str, now: float | None = None) -> TokenPair:
    """`POST /v1/auth/refresh`: spend a refresh token for a new pair; reuse revokes the family."""
    pair = _spend(refresh_token, time.time() if now is None else now)
    if pair is None:  # raised only now, so that a revocation has committed
        raise Unauthorized("invalid, expired or reused refresh token")
    return pair


@transaction.atomic
def _spend(refresh_token: str, now: float) -> TokenPair | None:
    stored = (
        RefreshToken.objects.select_for_update(no_key=True, of=("self",))
        .select_related("family__device")
        .filter(token_hash=_hash(refresh_token))
        .first()
    )
    if stored is None or stored.family.revoked or stored.expires_at < _moment(now):
        return None
    family, device = stored.family, stored.family.device
    if credential_fingerprint(device) != family.credential_fingerprint:
        return None  # the device's password changed (or was locked) since this login
    if stored.spent:
        # Two parties hold this family's tokens and the server cannot tell which is legitimate:
        # end the family, and close the device's sockets (one may have been opened with a token of
        # it); the device reconnects with its credentials or a new login.
        TokenFamily.objects.filter(pk=family.pk).update(revoked=True)
        disconnect_devices(aci=device.account_id, device_ids=[device.device_id])
        return None
    stored.spent = True
    stored.save(update_fields=["spent"])
    # Spent tokens are only needed to recognise reuse while they could still be presented.
    RefreshToken.objects.filter(family=family, expires_at__lt=_moment(now)).delete()
    TokenFamily.objects.filter(pk=family.pk).update(expires_at=_refresh_expiry(now))
    return _pair(device, family, now)


@dataclass(frozen=True, slots=True)
class BearerPrincipal:
    device: Device
    family: uuid.UUID


def authenticate_bearer(token: str) -> BearerPrincipal | None:
    """The device an access token stands for, or None (malformed, forged, expired, family revoked,
    device gone, or its password changed). One query: the device joined to the family."""
    try:
        claims = jwt.decode(
            token,
            signing_key(),
            algorithms=[ALGORITHM],  # never what the token's header asks for ("none", RS256…)
            issuer=ISSUER,
            options={"require": REQUIRED_CLAIMS},
        )
        family = uuid.UUID(str(claims["fam"]))
        account_id = uuid.UUID(str(claims["sub"]))
        device_pk, device_id, fingerprint = claims["dpk"], claims["dev"], claims["cf"]
        if not (isinstance(device_pk, int) and isinstance(device_id, int) and isinstance(fingerprint, str)):
            return None
    except (jwt.PyJWTError, ValueError, TypeError):
        return None
    device = (
        Device.objects.select_related("account")
        .filter(pk=device_pk, account_id=account_id, device_id=device_id)
        .filter(token_families__id=family, token_families__revoked=False)
        .first()
    )
    if device is None or not hmac.compare_digest(credential_fingerprint(device), fingerprint):
        return None
    return BearerPrincipal(device=device, family=family)
