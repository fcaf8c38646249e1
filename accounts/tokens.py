"""Bearer tokens for devices (our extension): a 1-hour access token (JWT, HS256) and a 30-day
refresh token that rotates on every use; reusing a spent one revokes the whole token family.

An access token names the device row (not just ACI and device id, which a re-linked device
reuses) and a fingerprint of the device's credential hash, so removing the device or changing its
password ends every token at once, with no extra lookup: the check rides on the device query that
authentication makes anyway.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from functools import cache

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Device, RefreshToken, TokenFamily
from signalserver.errors import Unauthorized

ACCESS_TOKEN_LIFETIME = timedelta(hours=1)
REFRESH_TOKEN_LIFETIME = timedelta(days=30)
ALGORITHM = "HS256"
ISSUER = "signalserver"


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


@cache
def _signing_key(secret: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"signalserver bearer tokens").derive(secret.encode())


def credential_fingerprint(device: Device) -> str:
    """Changes whenever the device's password does (and when it is locked)."""
    return hashlib.sha256(device.auth_token_hash.encode()).hexdigest()[:16]


def _hash(refresh_token: str) -> bytes:
    return hashlib.sha256(refresh_token.encode()).digest()


def _access_token(device: Device, family: uuid.UUID, now: float) -> str:
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
    return jwt.encode(claims, _signing_key(settings.SECRET_KEY), algorithm=ALGORITHM)


def _new_refresh_token(family: TokenFamily) -> str:
    token = secrets.token_urlsafe(32)
    RefreshToken.objects.create(token_hash=_hash(token), family=family, expires_at=timezone.now() + REFRESH_TOKEN_LIFETIME)
    return token


@transaction.atomic
def issue_tokens(*, device: Device) -> TokenPair:
    """`POST /v1/auth/token`: a new token family for a device that proved its credentials."""
    family = TokenFamily.objects.create(device=device, credential_fingerprint=credential_fingerprint(device))
    return TokenPair(_access_token(device, family.id, time.time()), _new_refresh_token(family), int(ACCESS_TOKEN_LIFETIME.total_seconds()))


def refresh_tokens(*, refresh_token: str) -> TokenPair:
    """`POST /v1/auth/refresh`: spend a refresh token for a new pair; reuse revokes the family."""
    pair = _spend(refresh_token)
    if pair is None:  # raised only now, so that a revocation has committed
        raise Unauthorized("invalid, expired or reused refresh token")
    return pair


@transaction.atomic
def _spend(refresh_token: str) -> TokenPair | None:
    stored = (
        RefreshToken.objects.select_for_update(of=("self",))
        .select_related("family__device")
        .filter(token_hash=_hash(refresh_token))
        .first()
    )
    if stored is None or stored.family.revoked or stored.expires_at < timezone.now():
        return None
    if credential_fingerprint(stored.family.device) != stored.family.credential_fingerprint:
        return None  # the device's password changed since this login
    if stored.spent:
        # Two parties hold this family's tokens and the server cannot tell which is legitimate.
        TokenFamily.objects.filter(pk=stored.family_id).update(revoked=True)
        return None
    stored.spent = True
    stored.save(update_fields=["spent"])
    return TokenPair(
        _access_token(stored.family.device, stored.family_id, time.time()),
        _new_refresh_token(stored.family),
        int(ACCESS_TOKEN_LIFETIME.total_seconds()),
    )


def authenticate_bearer(token: str):
    """The device an access token stands for, or None (expired, forged, revoked, device gone or
    its password changed)."""
    try:
        claims = jwt.decode(
            token,
            _signing_key(settings.SECRET_KEY),
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "dev", "dpk", "cf", "fam"]},
        )
        family = uuid.UUID(str(claims["fam"]))
    except (jwt.PyJWTError, ValueError):
        return None
    device = (
        Device.objects.select_related("account")
        .filter(pk=claims["dpk"], account_id=claims["sub"], device_id=claims["dev"])
        .filter(token_families__id=family, token_families__revoked=False)
        .first()
    )
    if device is None or credential_fingerprint(device) != claims["cf"]:
        return None
    return device
