"""ASGI middleware in front of everything (HTTP and WebSocket): the client's real address, and
banned address ranges refused before authentication or any other work (docs/architecture.md §7)."""

from __future__ import annotations

import ipaddress
import json
import logging

from django.conf import settings
from redis.exceptions import RedisError

from signalserver import operator_settings
from signalserver.errors import DATABASE_UNAVAILABLE
from signalserver.middleware import now_millis

logger = logging.getLogger(__name__)

HEALTH_PREFIX = "/health/"
BANNED_BODY = json.dumps({"code": 403, "message": "Forbidden"}).encode()


def client_ip(scope) -> str | None:
    """The trusted proxy header's last entry when one is configured and well formed, otherwise
    the connection's peer address."""
    peer = scope["client"][0] if scope.get("client") else None
    header = settings.TRUSTED_PROXY_HEADER
    if not header:
        return peer
    wanted = header.lower().encode("latin-1")
    for name, value in scope.get("headers", ()):
        if name.lower() == wanted:
            candidate = value.decode("latin-1").rsplit(",", 1)[-1].strip()
            try:
                return str(ipaddress.ip_address(candidate))
            except ValueError:
                return peer
    return peer


class ClientAddressMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        ip = client_ip(scope)
        if ip is not None and (not scope.get("client") or scope["client"][0] != ip):
            scope = dict(scope, client=(ip, 0))  # what Django (REMOTE_ADDR) and consumers read
        if scope["type"] == "http" and scope.get("path", "").startswith(HEALTH_PREFIX):
            # Probes answer whatever the database and Redis do (the ban list lives there): an
            # orchestrator must not restart healthy web processes over a database outage.
            return await self.app(scope, receive, send)
        try:
            banned = (await operator_settings.acurrent()).ip_banned(ip)
        except (RedisError, *DATABASE_UNAVAILABLE):
            # Redis or PostgreSQL is down: the copy this process has, if any. The request itself
            # then answers 503 wherever it needs them.
            cached = operator_settings.cached()
            banned = cached is not None and cached.ip_banned(ip)
        if not banned:
            return await self.app(scope, receive, send)
        if scope["type"] == "http":
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(BANNED_BODY)).encode()),
                (b"x-signal-timestamp", str(now_millis()).encode()),  # on every response, as Django's answers
            ]
            await send({"type": "http.response.start", "status": 403, "headers": headers})
            await send({"type": "http.response.body", "body": BANNED_BODY})
        else:
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 4403})  # before accept: the upgrade gets 403
