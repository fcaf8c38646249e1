"""TURN relays for one-to-one calls (GET /v2/calling/relays): where a device's calls may relay
their media, and the credentials it relays with.

The credentials follow coturn's REST-API scheme (`use-auth-secret`): the username is
`<expiry in unix seconds>:<random id>`, the password base64(HMAC-SHA1(TURN_SECRET, username)).
The TURN server checks both without asking us, and refuses the username once its expiry has passed.
The id is random, not the account's: the TURN server (and whoever reads its logs) cannot tell
whose call it relays, nor link two calls of one account.

Signal answers with one relay per TURN service it uses; we have one, from the settings. Without
TURN configured (the embedded run) the list is empty: clients then offer only their direct
addresses, which is what they do when no relay is reachable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

from django.conf import settings

from signalserver import ratelimit

RANDOM_ID_BYTES = 8  # the opaque part of a username: 16 hex digits


def relays_for(account) -> dict:
    """GET /v2/calling/relays for `account`, after its `getCallingRelays` limiter."""
    ratelimit.check("getCallingRelays", str(account.aci), aci=account.aci)
    return relays()


def relays(now: float | None = None) -> dict:
    """The body of GET /v2/calling/relays: `{"relays": [...]}`, fresh credentials valid
    TURN_TTL_SECONDS from `now` (unix seconds, default the current time); no relay when TURN is not
    configured."""
    if not settings.TURN_SECRET or not (settings.TURN_URLS or settings.TURN_URLS_WITH_IPS):
        return {"relays": []}
    ttl = settings.TURN_TTL_SECONDS
    expiry = int(time.time() if now is None else now) + ttl
    username = f"{expiry}:{secrets.token_hex(RANDOM_ID_BYTES)}"
    return {
        "relays": [
            {
                "username": username,
                "password": _password(settings.TURN_SECRET, username),
                "ttl": ttl,
                "urls": list(settings.TURN_URLS),
                # A list, possibly empty, never null: iOS decodes it as a non-optional array.
                "urlsWithIps": list(settings.TURN_URLS_WITH_IPS),
                "hostname": settings.TURN_HOSTNAME or None,
            }
        ]
    }


def _password(secret: str, username: str) -> str:
    """coturn's REST-API password of `username` under the shared secret."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")
