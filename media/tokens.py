"""Upload tokens (cdn 3): an HS256 JWT with `aud` "attachments", `sub` the object key,
`iat`, `exp` and `maxLen`, the largest length the upload may declare. The upload form hands it to
the client as `Authorization: Bearer <token>`; the tus endpoint (media.tus) accepts a request for a
key only with a valid token for that key."""

from __future__ import annotations

import time

import jwt
from django.conf import settings

from signalserver.crypto import server_key

AUDIENCE = "attachments"


class InvalidToken(Exception):
    pass


def _secret() -> bytes:
    return settings.ATTACHMENT_UPLOAD_SECRET.encode() or server_key("attachment upload tokens")


def issue(key: str, max_length: int) -> str:
    now = int(time.time())
    claims = {"aud": AUDIENCE, "sub": key, "iat": now, "exp": now + settings.ATTACHMENT_UPLOAD_SECONDS, "maxLen": max_length}
    return jwt.encode(claims, _secret(), algorithm="HS256")


def verify(authorization: str | None) -> tuple[str, int]:
    """The (key, maximum length) an `Authorization: Bearer` header grants; InvalidToken if none."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise InvalidToken("no bearer token")
    try:
        claims = jwt.decode(
            token.strip(), _secret(), algorithms=["HS256"], audience=AUDIENCE, options={"require": ["sub", "exp", "iat"]}
        )
    except jwt.InvalidTokenError as error:
        raise InvalidToken(type(error).__name__) from None
    key, max_length = claims["sub"], claims.get("maxLen")
    if not isinstance(key, str) or not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1:
        raise InvalidToken("malformed claims")
    return key, max_length
