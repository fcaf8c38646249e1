"""The push services at the network boundary: APNs over HTTP/2 with token (.p8) authentication
through `aioapns`, FCM HTTP v1 with a service-account credential (`firebase-admin`) over aiohttp.

Each gateway sends one notification to one token and says what became of it (`PushOutcome`):
sent; the token is no longer valid (APNs `Unregistered`, `BadDeviceToken`,
`ExpiredToken`, FCM `UNREGISTERED`), with the service's time of invalidation when it gives one;
worth retrying (429, 5xx, timeouts, connection failures), with a wait when the service asks for
one; or failed for good (any other refusal: a configuration problem, logged by the caller).

A gateway keeps its connections between sends (aioapns multiplexes concurrent sends over a few
HTTP/2 connections; the FCM gateway keeps up to a hundred HTTP connections alive and reuses its
OAuth token until it is about to expire), so send many notifications concurrently from one event loop rather than
one blocking request each. Tokens are never logged.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from datetime import UTC

import aiohttp
import aioapns
import orjson
from aioapns.common import PushType
from aioapns.connection import APNsTLSClientProtocol
from google.auth.exceptions import GoogleAuthError, TransportError

from push import payloads

SENT, INVALID_TOKEN, RETRY, FAILED = "sent", "invalidToken", "retry", "failed"
APNS_INVALID_TOKEN_REASONS = {"Unregistered", "BadDeviceToken", "ExpiredToken"}


@dataclass(frozen=True, slots=True)
class PushOutcome:
    status: str  # SENT, INVALID_TOKEN, RETRY or FAILED
    reason: str = ""  # the service's word for a refusal (never the token)
    invalidated_at_ms: int | None = None  # INVALID_TOKEN: when the service stopped taking it, if known
    retry_after: float | None = None  # RETRY: seconds the service asked to wait


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


class ApnsGateway:
    """APNs with a .p8 key. `server` ("host:port") and `ca_file` point it elsewhere than Apple's
    servers (a proxy, or the tests' local APNs); `sandbox` picks Apple's development servers."""

    def __init__(
        self,
        *,
        key: str,
        key_id: str,
        team_id: str,
        topic: str,
        sandbox: bool = False,
        server: str = "",
        ca_file: str = "",
        max_connections: int = 4,
    ):
        context = ssl.create_default_context(cafile=ca_file or None)
        self.client = aioapns.APNs(
            key=key,
            key_id=key_id,
            team_id=team_id,
            topic=topic,
            use_sandbox=sandbox,
            ssl_context=context,
            max_connections=max_connections,
        )
        if server:
            host, _, port = server.rpartition(":")
            # aioapns names Apple's host and port on its protocol class, nowhere else.
            self.client.pool.protocol_class = type(
                "APNsServerProtocol", (APNsTLSClientProtocol,), {"APNS_SERVER": host, "APNS_PORT": int(port)}
            )

    async def send(self, token: str, notification: payloads.Notification) -> PushOutcome:
        request = payloads.apns(notification)
        try:
            result = await self.client.send_notification(
                aioapns.NotificationRequest(
                    device_token=token,
                    message=request.payload,
                    time_to_live=request.ttl_seconds,
                    priority=request.priority,
                    collapse_key=request.collapse_id,
                    push_type=PushType(request.push_type),
                )
            )
        except (OSError, asyncio.TimeoutError, ConnectionError) as error:
            return PushOutcome(RETRY, reason=type(error).__name__)
        if result.is_successful:
            return PushOutcome(SENT)
        status = int(result.status)
        if result.description in APNS_INVALID_TOKEN_REASONS:
            return PushOutcome(INVALID_TOKEN, reason=result.description, invalidated_at_ms=result.timestamp)
        if _retryable(status):
            return PushOutcome(RETRY, reason=result.description or str(status))
        return PushOutcome(FAILED, reason=result.description or str(status))


# FCM sends at once from one process (each on a kept-alive connection of its own).
MAX_FCM_IN_FLIGHT = 100
FCM_API = "https://fcm.googleapis.com"
FCM_TIMEOUT_SECONDS = 10
# An access token is renewed this long before Google says it expires.
TOKEN_MARGIN_SECONDS = 300


class FcmGateway:
    """FCM HTTP v1 with a service account's credential (firebase-admin's `Certificate`, which
    mints and renews the OAuth access token through the credential's token_uri). `api_url` points
    it elsewhere than Google's server (a proxy, or the tests' local FCM).

    The sends themselves go through aiohttp, on up to MAX_FCM_IN_FLIGHT kept-alive connections:
    firebase-admin's own async client (httpx) spent 1.3 to 5 ms of CPU per request here (a worker
    could not send 1,000 a second), aiohttp 0.2 to 0.3 ms (docs/performance.md)."""

    def __init__(self, *, credentials_file: str, project_id: str = "", api_url: str = "", max_in_flight: int = MAX_FCM_IN_FLIGHT):
        from firebase_admin import credentials

        self._credential = credentials.Certificate(credentials_file)
        project_id = project_id or self._credential.project_id
        self._url = f"{(api_url or FCM_API).rstrip('/')}/v1/projects/{project_id}/messages:send"
        self._max_in_flight = max_in_flight
        self._session = None  # made on first use, on the loop that sends
        self._in_flight: asyncio.Semaphore | None = None
        self._token_lock: asyncio.Lock | None = None
        self._access_token, self._token_expires = "", 0.0

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, token: str, notification: payloads.Notification) -> PushOutcome:
        data, priority, ttl = payloads.fcm(notification)
        body = orjson.dumps({"message": {"token": token, "data": data, "android": {"priority": priority, "ttl": f"{ttl}s"}}})
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_in_flight),
                timeout=aiohttp.ClientTimeout(total=FCM_TIMEOUT_SECONDS),
            )
            self._in_flight, self._token_lock = asyncio.Semaphore(self._max_in_flight), asyncio.Lock()
        try:
            async with self._in_flight:
                status, headers, answer = await self._post(body, await self._bearer())
                if status == 401:  # the token was revoked or expired early: renew it once
                    status, headers, answer = await self._post(body, await self._bearer(renew=True))
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as error:
            return PushOutcome(RETRY, reason=type(error).__name__)
        except GoogleAuthError as error:  # the token endpoint is unreachable or refused the key
            return PushOutcome(RETRY if isinstance(error, TransportError) else FAILED, reason=type(error).__name__)
        if status == 200:
            return PushOutcome(SENT)
        reason = _fcm_error_code(answer) or str(status)
        if reason == "UNREGISTERED":
            return PushOutcome(INVALID_TOKEN, reason=reason)
        if _retryable(status):
            return PushOutcome(RETRY, reason=reason, retry_after=_retry_after(headers.get("Retry-After")))
        return PushOutcome(FAILED, reason=reason)

    async def _post(self, body: bytes, bearer: str) -> tuple[int, dict, bytes]:
        headers = {"Authorization": bearer, "Content-Type": "application/json; charset=UTF-8"}
        async with self._session.post(self._url, data=body, headers=headers) as response:
            return response.status, response.headers, await response.read()

    async def _bearer(self, *, renew: bool = False) -> str:
        """The OAuth access token, renewed (once, however many sends wait for it) when it is about
        to expire or FCM refused it; `get_access_token` always asks the token endpoint and blocks,
        so it runs in a thread."""
        stale = self._access_token
        async with self._token_lock:
            if self._access_token == stale and (renew or time.time() > self._token_expires - TOKEN_MARGIN_SECONDS):
                info = await asyncio.to_thread(self._credential.get_access_token)
                self._access_token = info.access_token
                self._token_expires = info.expiry.replace(tzinfo=UTC).timestamp() if info.expiry else time.time() + 3600
        return f"Bearer {self._access_token}"


def _fcm_error_code(answer: bytes) -> str:
    """FCM's `errorCode` (e.g. UNREGISTERED, QUOTA_EXCEEDED) from a Google API error body, else
    its `status` (e.g. UNAVAILABLE)."""
    try:
        error = orjson.loads(answer)["error"]
        for detail in error.get("details") or ():
            if detail.get("@type", "").endswith("google.firebase.fcm.v1.FcmError") and detail.get("errorCode"):
                return detail["errorCode"]
        return error.get("status") or ""
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return ""


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
