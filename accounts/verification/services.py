"""Verification sessions: proving control of a phone number before registration.

Signal splits this between its chat server and a private "registration service" that paces and
checks codes; we do both here. A session is one `VerificationSession` row.

Requested information. With a captcha provider configured, a new session always requests
`captcha`; a push token given at creation adds a push challenge, requested first. A correct push
challenge or a valid captcha satisfies both; `allowedToRequestCode` turns true when nothing is left.
Without a captcha provider nothing is requested: a push challenge is still created and sent for a
push token, but it is never a hurdle of its own (push may be disabled, and then nobody could answer).

Waiting policy (our choice, the numbers below; seconds are counted from the previous event):

* Codes may be requested only while `allowedToRequestCode` is true and the session is not verified.
* SMS: the first at once; after the n-th SMS the next waits `SMS_RESEND_WAITS_SECONDS[n-1]`
  (1 min, 5 min, 15 min); at most `MAX_SMS` (4) per session, then `nextSms` is null.
* Voice: only once an SMS was sent (before that `nextCall` is null and a request answers 418). The
  first call waits `CALL_WAITS_SECONDS[0]` (1 min) after the latest SMS, the next ones 5 and 15 min
  after the previous call; at most `MAX_CALLS` (3), then `nextCall` is null.
* Code checks: `nextVerificationAttempt` is null until a code was sent (and again once it expired),
  then 0. After the n-th wrong code the next check waits `CODE_RETRY_WAITS_SECONDS[n-1]` (0, 30 s,
  1 min, 5 min, 10 min). The `MAX_WRONG_CODES`-th (6th) wrong code exhausts the session: checks and
  code requests answer 429 with every wait null, and the client needs a new session.
* A code is valid for `CODE_TTL` (10 min) and replaces the previous one; only its HMAC (keyed with
  SECRET_KEY) is stored, and it is compared in constant time.
* A session expires `SESSION_TTL` (10 min) after its last update plus the longest wait pending at
  that moment, so a client that waits as told still finds it. Expired sessions answer 404.

Across sessions, named limiters (signalserver.ratelimit) count new sessions and code sends per
number and per client address, so opening a new session does not start a number's waits afresh.

Nothing here depends on whether the number is registered, so responses reveal nothing about it.
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from accounts.captcha import get_captcha_provider
from accounts.models import PhoneNumberIdentifier, RegistrationRecoveryPassword, VerificationSession
from accounts.phone import normalize_number
from accounts.verification.senders import SMS, TRANSPORTS, VOICE, VerificationSender, get_sender
from push.services import send_push_challenge
from signalserver import ratelimit
from signalserver.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    SenderRejected,
    TransportNotAllowed,
    UnprocessableEntity,
)
from signalserver import rows
from signalserver.db import bound_cursor, for_update
from signalserver.rows import RowLoader
from signalserver.wire import b64decode_url, b64encode_url

SESSION_ID_BYTES = 16
PUSH_CHALLENGE = "pushChallenge"
CAPTCHA = "captcha"
PUSH_TOKEN_TYPES = ("apn", "fcm")

SESSION_TTL = timedelta(minutes=10)
CODE_TTL = timedelta(minutes=10)
SMS_RESEND_WAITS_SECONDS = (60, 5 * 60, 15 * 60)
MAX_SMS = len(SMS_RESEND_WAITS_SECONDS) + 1
CALL_WAITS_SECONDS = (60, 5 * 60, 15 * 60)
MAX_CALLS = len(CALL_WAITS_SECONDS)
CODE_RETRY_WAITS_SECONDS = (0, 30, 60, 5 * 60, 10 * 60)
MAX_WRONG_CODES = len(CODE_RETRY_WAITS_SECONDS) + 1
MAX_CODE_LENGTH = 32  # longer than any code we send: such a submission is malformed (400)
MAX_LANGUAGE_LENGTH = 35

_URL_SAFE_BASE64 = re.compile(r"[A-Za-z0-9_-]*={0,2}")
_CODE_HMAC_SALT = "signalserver.accounts.verification.code"
_PUSH_FIELDS = ["requested_information", "push_challenge", "push_challenge_solved", "allowed_to_request_code"]


# --- Identifiers and the wire shape -------------------------------------------------------------


def session_id_from_text(text: str) -> bytes:
    """The 16 id bytes of a session id as clients send it (URL-safe base64, padded or not):
    422 when it does not decode, 400 when it decodes to the wrong length."""
    # Padding is only allowed at the end (the shared decoder is more lenient than Signal's).
    if not _URL_SAFE_BASE64.fullmatch(text):
        raise UnprocessableEntity("Malformed session ID")
    try:
        raw = b64decode_url(text)
    except ValueError:
        raise UnprocessableEntity("Malformed session ID") from None
    if len(raw) != SESSION_ID_BYTES:
        raise BadRequest("Invalid session ID")
    return raw


def session_id_text(session: VerificationSession) -> str:
    """The session id as Signal writes it: URL-safe base64 with padding."""
    return b64encode_url(bytes(session.id), padded=True)


def session_response(session: VerificationSession, *, now: datetime | None = None) -> dict:
    """The session object: the body of every session endpoint and of their 409/418/429."""
    now = now or timezone.now()
    return {
        "id": session_id_text(session),
        "nextSms": _next_sms(session, now),
        "nextCall": _next_call(session, now),
        "nextVerificationAttempt": _next_code_check(session, now),
        "allowedToRequestCode": session.allowed_to_request_code,
        "requestedInformation": list(session.requested_information),
        "verified": session.verified,
    }


# --- Selectors -----------------------------------------------------------------------------------


def get_verified_session(session_id: bytes) -> VerificationSession | None:
    """The unexpired, verified session with these id bytes, or None (for registration)."""
    return VerificationSession.objects.filter(pk=session_id, verified=True, expires_at__gt=timezone.now()).first()


def get_session(*, session_id: str) -> VerificationSession:
    """The unexpired session a client names; 404 when unknown or expired."""
    return _live_session(session_id_from_text(session_id), lock=False)


def find_live_session(raw_id: bytes, *, lock: bool = False) -> VerificationSession | None:
    """The unexpired session with these id bytes, or None; `lock` (inside a transaction): with its
    row locked `FOR NO KEY UPDATE`. Every step of a registration reads its session, so the statement
    is written once (signalserver.rows): a third of the ORM's CPU for the same read."""
    loader, sql = _session_rows()
    if lock:
        sql += for_update(no_key=True)
    now = connection.ops.adapt_datetimefield_value(timezone.now())  # as the ORM compares datetimes
    with bound_cursor() as cursor:
        cursor.execute(sql, [raw_id, now])
        row = cursor.fetchone()
    return loader.load(row) if row is not None else None


@cache
def _session_rows() -> tuple[RowLoader, str]:
    loader = RowLoader(VerificationSession)
    table = VerificationSession._meta.db_table
    return loader, f"SELECT {loader.columns('s')} FROM {table} s WHERE s.id = %s AND s.expires_at > %s"


_RECOVERY_PASSWORD_DELETE = (
    f"DELETE FROM {RegistrationRecoveryPassword._meta.db_table} WHERE pni IN"
    f" (SELECT pni FROM {PhoneNumberIdentifier._meta.db_table} WHERE number = %s)"
)


# --- Services ------------------------------------------------------------------------------------


def create_session(
    *,
    number: str,
    push_token: str | None = None,
    push_token_type: str | None = None,
    remote_ip: str | None = None,
) -> VerificationSession:
    """Start verifying `number`: request a captcha (when a provider is configured) and, when a push
    token is given, a push challenge as its alternative, requested first. Only the push token of the
    update fields is used here. 429 past the number's or the client address's session limit."""
    number = normalize_number(number)
    _check_push_token_pair(push_token, push_token_type)
    ratelimit.check_all(
        [
            ratelimit.Take("verificationSession", ratelimit.hashed(number)),
            ratelimit.Take("verificationSessionPerIp", _address_key(remote_ip)),
        ]
    )
    return _insert_session(number, push_token, push_token_type)


@transaction.atomic
def _insert_session(number: str, push_token: str | None, push_token_type: str | None) -> VerificationSession:
    now = timezone.now()
    session = VerificationSession(
        id=secrets.token_bytes(SESSION_ID_BYTES),
        number=number,
        requested_information=[CAPTCHA] if get_captcha_provider() is not None else [],
        expires_at=now,
    )
    if push_token:
        _send_push_challenge(session, push_token, push_token_type, request_it=bool(session.requested_information))
    session.allowed_to_request_code = not session.requested_information
    session.expires_at = _expiry(session, now)
    rows.insert(session)
    return session


def update_session(
    *,
    session_id: str,
    push_token: str | None = None,
    push_token_type: str | None = None,
    push_challenge: str | None = None,
    captcha: str | None = None,
    remote_ip: str | None = None,
) -> VerificationSession:
    """Supply requested information, in Signal's order: push token, push challenge, captcha.
    403 (with the session) when a challenge or captcha is wrong; earlier changes stay saved."""
    raw_id = session_id_from_text(session_id)
    _check_push_token_pair(push_token, push_token_type)
    # Every answer to a challenge costs a permit of the session's bucket, right or wrong. Keyed by
    # a hash of the id: the id is what lets a client act on the session.
    if push_challenge is not None:
        ratelimit.check("verificationPushChallenge", ratelimit.hashed(raw_id.hex()))
    if captcha is not None:
        ratelimit.check("verificationCaptcha", ratelimit.hashed(raw_id.hex()))
    provider = get_captcha_provider() if captcha is not None else None

    session, challenge_rejected = _apply_push_information(raw_id, push_token, push_token_type, push_challenge)
    if challenge_rejected:
        raise Forbidden("push challenge rejected", body=session_response(session))
    if provider is None:  # no captcha submitted, or captchas are off (then the token is ignored)
        return session

    # The provider is asked outside any transaction: no row lock is held across network I/O.
    valid = provider.assess(captcha, remote_ip=remote_ip)
    session = _apply_captcha(raw_id, valid)
    if not valid:
        raise Forbidden("captcha rejected", body=session_response(session))
    return session


def request_code(
    *,
    session_id: str,
    transport: str,
    client: str,
    accept_language: str | None = None,
    remote_ip: str | None = None,
) -> VerificationSession:
    """Send a code by SMS or voice, subject to the waiting policy and the number's and client
    address's code limits (409/418/429, or 440 when the provider refuses; a permanent refusal ends
    code delivery for the session)."""
    if transport not in TRANSPORTS:
        raise UnprocessableEntity("transport must be sms or voice")
    raw_id = session_id_from_text(session_id)
    sender = get_sender()  # configuration problems surface before any state changes
    _take_code_permits(raw_id, transport, remote_ip)
    reservation = _reserve_code(raw_id, transport, sender)
    try:
        sender.send(reservation.number, reservation.code, transport, client, _first_language(accept_language))
    except SenderRejected as exc:
        _release_reservation(raw_id, reservation, refusal=exc if exc.permanent else None)
        raise
    except Exception:
        _release_reservation(raw_id, reservation, refusal=None)
        raise
    return reservation.session


@transaction.atomic
def submit_code(*, session_id: str, code: str) -> VerificationSession:
    """Check a code. A wrong code is not an error (200, `verified: false`); 409 when verified
    already or no code is pending, 429 while a retry wait runs or once attempts are exhausted."""
    raw_id = session_id_from_text(session_id)
    code = code.strip()
    if not code or len(code) > MAX_CODE_LENGTH:
        raise BadRequest("Invalid verification code")
    now = timezone.now()
    session = _live_session(raw_id, lock=True)
    if session.verified or not session.code_hash:
        raise Conflict("session verified already, or no code sent", body=session_response(session, now=now))
    if session.failed_attempts >= MAX_WRONG_CODES:
        raise RateLimited(body=session_response(session, now=now))
    if session.code_expires_at is None or session.code_expires_at <= now:
        raise Conflict("the code has expired; request a new one", body=session_response(session, now=now))
    wait = _next_code_check(session, now)
    if wait:
        raise RateLimited(wait, body=session_response(session, now=now))

    if constant_time_compare(_code_hmac(raw_id, code), session.code_hash):
        session.verified = True
        session.code_hash, session.code_expires_at = "", None
        # The number is proven again: the recovery password, a second way in, is dropped.
        with bound_cursor() as cursor:
            cursor.execute(_RECOVERY_PASSWORD_DELETE, [session.number])
    else:
        session.failed_attempts += 1
        session.last_attempt_at = now
        if session.failed_attempts >= MAX_WRONG_CODES:
            session.allowed_to_request_code = False
    _save(
        session,
        now,
        ["verified", "code_hash", "code_expires_at", "failed_attempts", "last_attempt_at", "allowed_to_request_code"],
    )
    return session


def delete_expired_sessions() -> int:
    """Delete sessions past their expiry; the number deleted."""
    return VerificationSession.objects.filter(expires_at__lte=timezone.now()).delete()[0]


# --- Internals -----------------------------------------------------------------------------------


def _live_session(raw_id: bytes, *, lock: bool) -> VerificationSession:
    session = find_live_session(raw_id, lock=lock)
    if session is None:
        raise NotFound("Verification session not found")
    return session


def _address_key(remote_ip: str | None) -> str | None:
    """A client address as a limiter key; None (unknown) lets the fail-open per-address limiters pass."""
    return ratelimit.hashed(remote_ip) if remote_ip else None


def _check_push_token_pair(push_token: str | None, push_token_type: str | None) -> None:
    if (push_token is None) != (push_token_type is None):
        raise UnprocessableEntity("pushToken and pushTokenType must be given together")
    if push_token_type is not None and push_token_type not in PUSH_TOKEN_TYPES:
        raise UnprocessableEntity("pushTokenType must be apn or fcm")


def _send_push_challenge(session: VerificationSession, token: str, token_type: str, *, request_it: bool) -> None:
    """Create the session's push challenge on first use (requesting it first when `request_it`),
    and send it to the token once the transaction commits; a later token gets the same challenge."""
    if not session.push_challenge:
        session.push_challenge = secrets.token_hex(16)
        if request_it:
            session.requested_information = [PUSH_CHALLENGE, *session.requested_information]
    challenge = session.push_challenge
    transaction.on_commit(lambda: send_push_challenge(token_type, token, challenge))


def _satisfy(session: VerificationSession, item: str) -> None:
    """A correct push challenge or a valid captcha stands in for the other (Signal's rule); the
    session may request codes once nothing is left, unless it was exhausted already."""
    removed = item in session.requested_information
    session.requested_information = [
        i for i in session.requested_information if i not in (PUSH_CHALLENGE, CAPTCHA)
    ]
    session.allowed_to_request_code = (
        session.allowed_to_request_code or removed
    ) and not session.requested_information


@transaction.atomic
def _apply_push_information(
    raw_id: bytes, push_token: str | None, push_token_type: str | None, push_challenge: str | None
) -> tuple[VerificationSession, bool]:
    """Steps 1 and 2 of an update; saved even when the challenge is wrong (the caller raises 403)."""
    now = timezone.now()
    session = _live_session(raw_id, lock=True)
    if push_token:
        # A challenge created now is only requested while something else still is: it is an
        # alternative to the captcha, not a new hurdle for a session that may already send codes.
        _send_push_challenge(session, push_token, push_token_type, request_it=bool(session.requested_information))
    rejected = False
    if push_challenge is not None and not session.push_challenge_solved:
        if session.push_challenge and constant_time_compare(push_challenge, session.push_challenge):
            session.push_challenge_solved = True
            _satisfy(session, PUSH_CHALLENGE)
        else:
            rejected = True
    _save(session, now, _PUSH_FIELDS)
    return session, rejected


@transaction.atomic
def _apply_captcha(raw_id: bytes, valid: bool) -> VerificationSession:
    now = timezone.now()
    session = _live_session(raw_id, lock=True)
    if valid:
        _satisfy(session, CAPTCHA)
        _save(session, now, _PUSH_FIELDS)
    return session


@dataclass
class _Reservation:
    """A code send recorded before the provider is called (so no lock is held during the call),
    with what it replaced, to be put back if the provider fails."""

    session: VerificationSession
    number: str
    code: str
    code_hash: str
    previous: dict = field(default_factory=dict)


def _take_code_permits(raw_id: bytes, transport: str, remote_ip: str | None) -> None:
    """Take one code's permits from the number's and the client address's buckets, only for a send
    the session itself allows now. The session is read without a lock, so no row lock is held while
    Redis answers: a concurrent request that the session refuses under the lock a moment later has
    spent permits for nothing, a race accepted on purpose. The 429 carries the session, its waits
    raised to the limiter's so that a client counting down from them does not ask again early."""
    now = timezone.now()
    session = _live_session(raw_id, lock=False)
    _check_may_send(session, transport, now)
    number = ratelimit.hashed(session.number)
    try:
        # The longest-leaking bucket first: the Retry-After of a refusal is that of the first bucket
        # short of permits, and the daily one's is the wait that matters once it is drained.
        ratelimit.check_all(
            [
                ratelimit.Take("verificationCodeDaily", number),
                ratelimit.Take("verificationCode", number),
                ratelimit.Take("verificationCodePerIp", _address_key(remote_ip)),
            ]
        )
    except RateLimited as refused:
        body = session_response(session, now=now)
        for name in ("nextSms", "nextCall"):
            if body[name] is not None:
                body[name] = max(body[name], refused.retry_after)
        raise RateLimited(refused.retry_after, body=body, limiter=refused.limiter) from None


def _check_may_send(session: VerificationSession, transport: str, now: datetime) -> None:
    """The session's own policy: 409/418/429 (with the session) when it allows no code now."""

    def body():
        return session_response(session, now=now)

    if session.verified:
        raise Conflict("session verified already", body=body())
    if not session.allowed_to_request_code:
        if session.requested_information:
            raise Conflict("requested information missing", body=body())
        raise RateLimited(body=body())  # exhausted: nothing can be supplied to change that
    if session.sender_refused:
        raise SenderRejected(session.sender_refusal_reason or SenderRejected.PROVIDER_REJECTED, permanent=True)
    if transport == VOICE and session.sms_sent == 0:
        raise TransportNotAllowed("voice calls follow an SMS", body=body())
    wait = _next_sms(session, now) if transport == SMS else _next_call(session, now)
    if wait is None:
        raise RateLimited(body=body())
    if wait > 0:
        raise RateLimited(wait, body=body())


@transaction.atomic
def _reserve_code(raw_id: bytes, transport: str, sender: VerificationSender) -> _Reservation:
    now = timezone.now()
    session = _live_session(raw_id, lock=True)
    _check_may_send(session, transport, now)  # again, under the lock
    count_field, time_field = ("sms_sent", "last_sms_at") if transport == SMS else ("calls_made", "last_call_at")
    previous = {
        name: getattr(session, name) for name in ("code_hash", "code_expires_at", count_field, time_field)
    }
    code = sender.make_code()
    session.code_hash = _code_hmac(raw_id, code)
    session.code_expires_at = now + CODE_TTL
    setattr(session, count_field, getattr(session, count_field) + 1)
    setattr(session, time_field, now)
    _save(session, now, list(previous))
    return _Reservation(
        session=session, number=session.number, code=code, code_hash=session.code_hash, previous=previous
    )


@transaction.atomic
def _release_reservation(raw_id: bytes, reservation: _Reservation, *, refusal: SenderRejected | None) -> None:
    """The provider failed: undo the send (unless a later one replaced it) and remember a permanent refusal."""
    session = VerificationSession.objects.select_for_update(no_key=True).filter(pk=raw_id).first()
    if session is None:
        return
    fields = []
    if constant_time_compare(session.code_hash, reservation.code_hash):
        for name, value in reservation.previous.items():
            setattr(session, name, value)
        fields += list(reservation.previous)
    if refusal is not None:
        session.sender_refused, session.sender_refusal_reason = True, refusal.reason
        fields += ["sender_refused", "sender_refusal_reason"]
    if fields:
        _save(session, timezone.now(), fields)


def _code_hmac(raw_id: bytes, code: str) -> str:
    """HMAC-SHA256 of the code, keyed with SECRET_KEY and bound to the session (64 hex characters)."""
    message = raw_id.hex() + ":" + code
    return salted_hmac(_CODE_HMAC_SALT, message, secret=settings.SECRET_KEY, algorithm="sha256").hexdigest()


def _first_language(accept_language: str | None) -> str | None:
    """The client's preferred language tag from an Accept-Language header (e.g. `de-DE`)."""
    if not accept_language:
        return None
    tag = accept_language.split(",", 1)[0].split(";", 1)[0].strip()
    return tag[:MAX_LANGUAGE_LENGTH] if tag and tag != "*" else None


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(0, math.ceil((moment - now).total_seconds()))


def _may_send_codes(session: VerificationSession) -> bool:
    return session.allowed_to_request_code and not session.verified and not session.sender_refused


def _next_sms(session: VerificationSession, now: datetime) -> int | None:
    if not _may_send_codes(session) or session.sms_sent >= MAX_SMS:
        return None
    if session.sms_sent == 0 or session.last_sms_at is None:
        return 0
    return _seconds_until(session.last_sms_at + timedelta(seconds=SMS_RESEND_WAITS_SECONDS[session.sms_sent - 1]), now)


def _next_call(session: VerificationSession, now: datetime) -> int | None:
    if not _may_send_codes(session) or session.sms_sent == 0 or session.calls_made >= MAX_CALLS:
        return None
    since = session.last_call_at if session.calls_made else session.last_sms_at
    if since is None:
        return 0
    return _seconds_until(since + timedelta(seconds=CALL_WAITS_SECONDS[session.calls_made]), now)


def _next_code_check(session: VerificationSession, now: datetime) -> int | None:
    if session.verified or not session.code_hash or session.failed_attempts >= MAX_WRONG_CODES:
        return None
    if session.code_expires_at is None or session.code_expires_at <= now:
        return None
    if session.failed_attempts == 0 or session.last_attempt_at is None:
        return 0
    retry_at = session.last_attempt_at + timedelta(seconds=CODE_RETRY_WAITS_SECONDS[session.failed_attempts - 1])
    return _seconds_until(retry_at, now)


def _expiry(session: VerificationSession, now: datetime) -> datetime:
    waits = (_next_sms(session, now), _next_call(session, now), _next_code_check(session, now))
    return now + SESSION_TTL + timedelta(seconds=max((w for w in waits if w), default=0))


def _save(session: VerificationSession, now: datetime, fields: list[str]) -> None:
    """Save the changed fields; every update moves the expiry (SESSION_TTL after the longest wait)."""
    session.expires_at = _expiry(session, now)
    rows.update(session, [*fields, "expires_at"])
