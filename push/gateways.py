"""The push services at the network boundary: APNs over HTTP/2 with token (.p8) authentication
through `aioapns`, FCM HTTP v1 through `firebase-admin` with a service-account credential.

Each gateway sends one notification to one token and says what became of it (`PushOutcome`):
sent; the token is no longer valid (spec §7.3: APNs `Unregistered`, `BadDeviceToken`,
`ExpiredToken`, FCM `UNREGISTERED`), with the service's time of invalidation when it gives one;
worth retrying (429, 5xx, timeouts, connection failures), with a wait when the service asks for
one; or failed for good (any other refusal: a configuration problem, logged by the caller).

A gateway keeps its connections between sends (aioapns multiplexes concurrent sends over a few
HTTP/2 connections; firebase-admin's async client shares one HTTP/2 client and reuses its OAuth
token until it expires), so send many notifications concurrently from one event loop rather than
one blocking request each. Tokens are never logged.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

import aioapns
from aioapns.common import PushType
from aioapns.connection import APNsTLSClientProtocol

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


class FcmGateway:
    """FCM HTTP v1 with a service account's credential. `api_url` points it elsewhere than
    Google's server (a proxy, or the tests' local FCM); OAuth goes to the credential's token_uri."""

    def __init__(self, *, credentials_file: str, project_id: str = "", api_url: str = ""):
        import firebase_admin
        from firebase_admin import credentials, messaging

        self._messaging = messaging
        options = {"projectId": project_id} if project_id else None
        self.app = firebase_admin.initialize_app(
            credentials.Certificate(credentials_file), options=options, name=f"signalserver-push-{id(self)}"
        )
        if api_url:
            # firebase-admin takes the send URL from a class constant, nowhere else.
            service = messaging._get_messaging_service(self.app)
            service._fcm_url = f"{api_url.rstrip('/')}/v1/projects/{service._project_id}/messages:send"

    def close(self) -> None:
        import firebase_admin

        firebase_admin.delete_app(self.app)

    async def send(self, token: str, notification: payloads.Notification) -> PushOutcome:
        from firebase_admin import exceptions

        messaging = self._messaging
        data, priority, ttl = payloads.fcm(notification)
        message = messaging.Message(token=token, data=data, android=messaging.AndroidConfig(priority=priority, ttl=ttl))
        try:
            response = (await messaging.send_each_async([message], app=self.app)).responses[0]
        except exceptions.FirebaseError as error:  # the whole call failed (e.g. OAuth unreachable)
            return PushOutcome(RETRY, reason=type(error).__name__)
        if response.success:
            return PushOutcome(SENT)
        error = response.exception
        if isinstance(error, messaging.UnregisteredError):
            return PushOutcome(INVALID_TOKEN, reason="UNREGISTERED")
        if isinstance(
            error,
            (
                messaging.QuotaExceededError,
                exceptions.ResourceExhaustedError,
                exceptions.UnavailableError,
                exceptions.InternalError,
                exceptions.DeadlineExceededError,
                exceptions.UnknownError,
            ),
        ):
            return PushOutcome(RETRY, reason=type(error).__name__, retry_after=_retry_after(error))
        return PushOutcome(FAILED, reason=type(error).__name__)


def _retry_after(error) -> float | None:
    response = getattr(error, "http_response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value else None
    except ValueError:
        return None
