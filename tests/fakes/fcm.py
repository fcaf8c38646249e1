"""A local Firebase Cloud Messaging HTTP v1 API and Google OAuth2 token endpoint.

Routes:
- `POST /token`: Google's JWT-bearer grant (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`,
  `assertion=<RS256 JWT signed by the service account's key>`) → `{"access_token", "expires_in",
  "token_type"}`; failures answer like Google: 400 `{"error": "invalid_grant" | "invalid_scope" |
  "unsupported_grant_type", "error_description": ...}`.
- `POST /v1/projects/<project_id>/messages:send` with `Authorization: Bearer <token issued here>`
  → 200 `{"name": "projects/<id>/messages/<n>"}`; errors are Google API errors
  `{"error": {"code", "message", "status", "details": [{"@type": ...FcmError, "errorCode"}]}}`.

How firebase-admin 7.7.0 reaches this server (read from firebase_admin/messaging.py, _http_client.py
and google-auth 2.63):
- OAuth: the service account's `token_uri` is where google-auth POSTs the grant, so a credential
  from `FakeFcm.service_account()` (token_uri = `<fake>/token`) routes OAuth here. google-auth signs
  `aud = "https://oauth2.googleapis.com/token"` (a constant, *not* the token_uri), as real Google
  expects; the fake accepts that audience or its own token_uri.
- FCM: there is no emulator env var and no app option for messaging (FIREBASE_MESSAGING_EMULATOR_HOST
  does not exist; only `projectId` and `httpTimeout` are read). The endpoint is the class attribute
  `firebase_admin.messaging._MessagingService.FCM_URL =
  'https://fcm.googleapis.com/v1/projects/{0}/messages:send'`, formatted with the project id once,
  in `_MessagingService.__init__`, into the per-app instance attribute `_fcm_url` (the service is
  created lazily on the app's first messaging call and cached on the app). So either
  * set `_MessagingService.FCM_URL = fake.fcm_url_template` before the app's first messaging call
    (process-wide; tests use `monkeypatch.setattr`), or
  * set `messaging._get_messaging_service(app)._fcm_url = fake.send_url(project_id)` for one app.
  Production code can do the latter from a setting (e.g. FCM_API_URL). `send`, `send_each` and
  `send_each_async` all use `_fcm_url`.
- Retries: requests to any `http://` URL go through the client's adapter with firebase-admin's
  DEFAULT_RETRY_CONFIG (urllib3 Retry: up to 4 retries on 500/503, backoff 0.5 s doubling with
  the first retry immediate), so `fail_next(1, 503)` is retried transparently. urllib3 also
  retries a 429 or 503 that carries Retry-After, sleeping for it: a 429 without Retry-After
  raises `messaging.QuotaExceededError` at once, one with `Retry-After: 1` is retried after 1 s.
- Tokens: google-auth caches the access token until near expiry and refreshes once on a 401 from
  FCM. Its blocking refresh takes no lock, so concurrent *first* sends may each fetch a token.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.fakes.http import FakeServer, RecordedRequest, Reply

PROJECT_ID = "signal-test"
CLIENT_EMAIL = f"firebase-adminsdk@{PROJECT_ID}.iam.gserviceaccount.com"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_SCOPES = {"https://www.googleapis.com/auth/firebase.messaging", "https://www.googleapis.com/auth/cloud-platform"}
TOKEN_PATH = "/token"
SEND_PATH = re.compile(r"^/v1/projects/(?P<project>[^/]+)/messages:send$")
TTL = re.compile(r"^\d+(\.\d{1,9})?s$")
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
FCM_ERROR_CODES = {429: "QUOTA_EXCEEDED", 500: "INTERNAL", 503: "UNAVAILABLE"}
FAILURE_MESSAGES = {
    429: "Quota exceeded for quota metric 'Send requests' of service 'fcm.googleapis.com'.",
    500: "Internal error encountered.",
    503: "The service is currently unavailable.",
}

_DEFAULT = object()


def fcm_error(status: int, message: str, error_code: str | None = None, headers: dict | None = None) -> Reply:
    """A Google API error body; `error_code` adds FCM's `FcmError` detail (what firebase-admin maps)."""
    error = {"code": status, "message": message, "status": STATUS_NAMES[status]}
    if error_code:
        error["details"] = [{"@type": FCM_ERROR_TYPE, "errorCode": error_code}]
    return Reply(status, {"error": error}, headers=headers or {})


def oauth_error(error: str, description: str, status: int = 400) -> Reply:
    return Reply(status, {"error": error, "error_description": description})


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@dataclass
class FcmMessage:
    """A message the fake accepted."""

    name: str
    project_id: str
    token: str  # message.token (or message.fid)
    data: dict[str, str]
    priority: str | None  # android.priority, lower-cased ("high" / "normal")
    ttl: str | None  # android.ttl as sent, e.g. "3600s"
    received_at: float  # time.monotonic()
    body: dict = field(repr=False)  # the whole `message` object


@dataclass
class _Account:
    project_id: str
    public_key: rsa.RSAPublicKey


class FakeFcm(FakeServer):
    """Use as a context manager. `service_account()` is a credential dict firebase-admin accepts."""

    def __init__(self, project_id: str = PROJECT_ID, client_email: str = CLIENT_EMAIL):
        super().__init__()
        # firebase-admin's send_each opens up to 100 connections at once; the stdlib listen
        # backlog of 5 would drop SYNs and stall clients for a 1 s retransmit.
        self._server.socket.listen(128)
        # Stop within 50 ms rather than serve_forever's default 0.5 s poll (one fake per test).
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        # tests/fakes/http.py writes only Content-Type from `Reply.headers`; FCM's 429 carries
        # Retry-After. `answer` runs on the handler's own thread, so a thread-local hands the
        # reply's other headers to the handler as it ends the header block.
        self._replying = threading.local()
        fake, base = self, self._server.RequestHandlerClass

        class Handler(base):
            def end_headers(self):
                reply, fake._replying.reply = getattr(fake._replying, "reply", None), None
                for name, value in (reply.headers.items() if reply else ()):
                    if name.lower() != "content-type":
                        self.send_header(name, value)
                super().end_headers()

        self._server.RequestHandlerClass = Handler
        self.project_id, self.client_email = project_id, client_email
        self.unregistered: set[str] = set()  # 404 UNREGISTERED
        self.foreign_tokens: set[str] = set()  # 403 SENDER_ID_MISMATCH (registered to another sender)
        self.next_replies: deque[Reply] = deque()  # canned answers for sends, before the normal rules
        self.messages: list[FcmMessage] = []
        self.token_requests = 0  # POSTs to /token, successful or not
        self.send_requests = 0  # POSTs to messages:send, including failed and retried ones
        self._accounts: dict[str, _Account] = {}
        self._private_keys: dict[str, str] = {}
        self._issued: dict[str, tuple[str, float]] = {}  # access token -> (client_email, expiry)
        self._names = itertools.count(1)
        self._state = threading.Condition()
        self.add_service_account(project_id=project_id, client_email=client_email)

    # --- credentials -------------------------------------------------------------------------

    @property
    def token_uri(self) -> str:
        return self.url + TOKEN_PATH

    @property
    def fcm_url_template(self) -> str:
        """Same shape as `firebase_admin.messaging._MessagingService.FCM_URL`."""
        return self.url + "/v1/projects/{0}/messages:send"

    def send_url(self, project_id: str | None = None) -> str:
        return self.fcm_url_template.format(project_id or self.project_id)

    def add_service_account(self, *, project_id: str, client_email: str) -> dict:
        """Trust a new RSA key for `client_email` (allowed to send for `project_id` only)."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        with self._state:
            self._accounts[client_email] = _Account(project_id, key.public_key())
            self._private_keys[client_email] = pem
        return self.service_account(client_email)

    def service_account(self, client_email: str | None = None) -> dict:
        """A service-account JSON dict (as downloaded from the console) whose token_uri is this fake."""
        email = client_email or self.client_email
        return {
            "type": "service_account",
            "project_id": self._accounts[email].project_id,
            "private_key_id": secrets.token_hex(20),
            "private_key": self._private_keys[email],
            "client_email": email,
            "client_id": "1" * 21,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
        }

    def write_service_account(self, path: Path, client_email: str | None = None) -> Path:
        path.write_text(json.dumps(self.service_account(client_email)))
        return path

    # --- controls ----------------------------------------------------------------------------

    def unregister(self, token: str) -> None:
        """Sends to `token` answer 404 UNREGISTERED (the app was uninstalled)."""
        self.unregistered.add(token)

    def fail_next(self, n: int = 1, status: int = 503, retry_after: int | None | object = _DEFAULT) -> None:
        """The next `n` send requests fail with 429 RESOURCE_EXHAUSTED / QUOTA_EXCEEDED (with
        `Retry-After: 1` unless given; None for none), 500 INTERNAL or 503 UNAVAILABLE (Retry-After
        only if given).
        firebase-admin retries 500/503, and 429/503 with Retry-After, up to 4 times (module doc)."""
        if status not in FAILURE_MESSAGES:
            raise ValueError(f"fail_next supports {sorted(FAILURE_MESSAGES)}, not {status}")
        if retry_after is _DEFAULT:
            retry_after = 1 if status == 429 else None
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        with self._state:
            for _ in range(n):
                self.next_replies.append(fcm_error(status, FAILURE_MESSAGES[status], FCM_ERROR_CODES[status], headers))

    def revoke_tokens(self) -> None:
        """Every access token issued so far stops working (401), as if it had expired."""
        with self._state:
            self._issued.clear()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[FcmMessage]:
        """Block until at least `count` messages were accepted; AssertionError after `timeout`."""
        with self._state:
            if not self._state.wait_for(lambda: len(self.messages) >= count, timeout=timeout):
                raise AssertionError(f"FCM received {len(self.messages)} messages, expected {count} within {timeout}s")
            return list(self.messages)

    @property
    def issued_tokens(self) -> int:
        return len(self._issued)

    # --- protocol ----------------------------------------------------------------------------

    def answer(self, request: RecordedRequest) -> Reply:
        reply = self._answer(request)
        self._replying.reply = reply
        return reply

    def _answer(self, request: RecordedRequest) -> Reply:
        if request.method == "POST" and request.path == TOKEN_PATH:
            with self._state:
                self.token_requests += 1
            return self._token(request)
        match = SEND_PATH.match(request.path)
        if request.method == "POST" and match:
            with self._state:
                self.send_requests += 1
                canned = self.next_replies.popleft() if self.next_replies else None
            return canned or self._send(request, match["project"])
        return fcm_error(404, f"The requested URL {request.path} was not found on this server.")

    def _token(self, request: RecordedRequest) -> Reply:
        form = request.form
        if form.get("grant_type") != JWT_BEARER:
            return oauth_error("unsupported_grant_type", f"Invalid grant_type: {form.get('grant_type', '')}")
        try:
            header_b64, payload_b64, signature_b64 = form.get("assertion", "").split(".")
            header, claims = json.loads(_b64decode(header_b64)), json.loads(_b64decode(payload_b64))
            signature = _b64decode(signature_b64)
        except ValueError:
            return oauth_error("invalid_grant", "Invalid JWT: malformed assertion.")
        account = self._accounts.get(claims.get("iss"))
        if account is None:
            return oauth_error("invalid_grant", "Invalid grant: account not found")
        if header.get("alg") != "RS256":
            return oauth_error("invalid_grant", "Invalid JWT Signature.")
        try:
            account.public_key.verify(
                signature, f"{header_b64}.{payload_b64}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            return oauth_error("invalid_grant", "Invalid JWT Signature.")
        if claims.get("aud") not in (GOOGLE_TOKEN_AUDIENCE, self.token_uri):
            return oauth_error("invalid_grant", "Invalid JWT: Failed audience check.")
        now = time.time()
        iat, exp = claims.get("iat", 0), claims.get("exp", 0)
        if not (iat - 300 <= now < exp and exp - iat <= 3600):
            return oauth_error(
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.",
            )
        if not FCM_SCOPES & set(str(claims.get("scope", "")).split()):
            return oauth_error("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        access_token = "ya29.fake-" + secrets.token_urlsafe(32)
        with self._state:
            self._issued[access_token] = (claims["iss"], time.monotonic() + 3600)
        return Reply(200, {"access_token": access_token, "expires_in": 3600, "token_type": "Bearer"})

    def _send(self, request: RecordedRequest, project_id: str) -> Reply:
        # HTTP header names are case-insensitive; google-auth sends "authorization".
        auth = next((v for k, v in request.headers.items() if k.lower() == "authorization"), "")
        with self._state:
            issued = self._issued.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None
        if issued is None or issued[1] < time.monotonic():
            return fcm_error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
                "cookie or other valid authentication credential.",
            )
        if self._accounts[issued[0]].project_id != project_id:
            return fcm_error(
                403,
                f"Permission 'cloudmessaging.messages.create' denied on resource "
                f"'//cloudresourcemanager.googleapis.com/projects/{project_id}' (or it may not exist).",
            )
        try:
            body = json.loads(request.body)
            message = body["message"]
            assert isinstance(message, dict)
        except (ValueError, KeyError, TypeError, AssertionError):
            return fcm_error(400, "Invalid JSON payload received.")
        invalid = self._invalid(message)
        if invalid:
            return fcm_error(400, invalid, "INVALID_ARGUMENT")
        # firebase-admin 7.7 deprecates Message.token for Message.fid (an installation id); Signal
        # clients register FCM registration tokens, so `token` is what production sends.
        token = message.get("token") or message["fid"]
        if token in self.unregistered:
            return fcm_error(404, "Requested entity was not found.", "UNREGISTERED")
        if token in self.foreign_tokens:
            return fcm_error(403, "SenderId mismatch", "SENDER_ID_MISMATCH")
        if body.get("validate_only"):
            return Reply(200, {"name": f"projects/{project_id}/messages/fake_message_id"})
        android = message.get("android") or {}
        with self._state:
            name = f"projects/{project_id}/messages/{next(self._names)}"
            self.messages.append(
                FcmMessage(
                    name=name,
                    project_id=project_id,
                    token=token,
                    data=message.get("data") or {},
                    priority=android.get("priority", "").lower() or None,
                    ttl=android.get("ttl"),
                    received_at=time.monotonic(),
                    body=message,
                )
            )
            self._state.notify_all()
        return Reply(200, {"name": name})

    @staticmethod
    def _invalid(message: dict) -> str | None:
        """FCM's INVALID_ARGUMENT checks that matter to us; None when the message is acceptable."""
        if not (message.get("token") or message.get("fid")):
            # The fake serves single devices only (no topics or conditions).
            return "Recipient of the message is not set."
        data = message.get("data") or {}
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            return "Invalid value at 'message.data': values must be strings."
        android = message.get("android") or {}
        if android.get("priority", "normal").lower() not in ("normal", "high"):
            return f"Invalid value at 'message.android.priority' ({android['priority']})"
        if "ttl" in android and not TTL.match(str(android["ttl"])):
            return f"Invalid value at 'message.android.ttl' ({android['ttl']}), Illegal duration format"
        return None


@pytest.fixture
def fcm_server():
    """A running FakeFcm for one test."""
    with FakeFcm() as fake:
        yield fake
