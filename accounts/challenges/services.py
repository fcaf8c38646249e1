"""Rate-limit challenges: a limit a challenge can lift answers 428 instead of 429, and
the account proves it is human (captcha) or holds its primary device (push challenge) with
`PUT /v1/challenge`; the limit is then lifted.

Which limits a challenge lifts is policy. Ours: the sender's `messages` buckets, the
limit an automated sender hits first. The 428 token is signed for the account and names nothing.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta

from django.core import signing
from django.db import transaction
from django.utils import timezone

from accounts.captcha import get_captcha_provider
from accounts.models import PRIMARY_DEVICE_ID, Account, Device, RateLimitPushChallenge
from push.services import send_push_challenge
from signalserver import ratelimit
from signalserver.errors import BadRequest, ChallengeRequired, DomainError, NotFound, RateLimited

CAPTCHA = "captcha"
PUSH_CHALLENGE = "pushChallenge"
PUSH_CHALLENGE_LIFETIME = timedelta(minutes=5)
TOKEN_MAX_AGE = timedelta(days=1)
TOKEN_VALUE = "rate-limit-challenge"


def _signer(account: Account) -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=f"signalserver.challenge.{account.aci}")


def _primary(account: Account) -> Device | None:
    return Device.objects.filter(account=account, device_id=PRIMARY_DEVICE_ID).first()


def challenge_for(account: Account, retry_after: int | None = None) -> ChallengeRequired:
    """The 428 for the account: a fresh token and the challenge kinds it may answer now (each only
    while both its attempt and success limiters have a permit left)."""
    aci = str(account.aci)

    def allowed(kind: str) -> bool:
        return all(ratelimit.available(f"{kind}{stage}", aci, aci=account.aci) for stage in ("Attempt", "Success"))

    options = []
    if get_captcha_provider() is not None and allowed("captchaChallenge"):
        options.append(CAPTCHA)
    primary = _primary(account)
    if primary is not None and (primary.apn_id or primary.gcm_id) and allowed("pushChallenge"):
        options.append(PUSH_CHALLENGE)
    return ChallengeRequired(_signer(account).sign(TOKEN_VALUE), options, retry_after)


def challenge_gated(failure: DomainError, name: str, *, account: Account) -> DomainError:
    """What a refused rate-limit check that included limiter `name` answers (`ratelimit.check_each`):
    the 428 when `name` refused and some challenge can be answered now, else the refusal itself."""
    if not isinstance(failure, RateLimited) or failure.limiter != name:
        return failure
    challenge = challenge_for(account, failure.retry_after)
    return challenge if challenge.options else failure


def _lift_limits(account: Account) -> None:
    ratelimit.check("rateLimitReset", str(account.aci), aci=account.aci)
    ratelimit.reset("messages", ratelimit.pair_key(account.aci, "*"))


def answer_captcha(*, account: Account, token: str, captcha: str, remote_ip: str | None) -> None:
    """`PUT /v1/challenge` with `type: captcha`: 400 for a token not issued to this account (or
    no captcha provider), 428 when the captcha is not accepted, 429 when out of attempts."""
    try:
        _signer(account).unsign(token, max_age=TOKEN_MAX_AGE)
    except signing.BadSignature:
        raise BadRequest("invalid challenge token") from None
    provider = get_captcha_provider()
    if provider is None:
        raise BadRequest("captcha challenges are not offered")
    ratelimit.check("captchaChallengeAttempt", str(account.aci), aci=account.aci)
    if not provider.assess(captcha, remote_ip=remote_ip):  # 503 when the provider is down
        raise challenge_for(account)
    ratelimit.check("captchaChallengeSuccess", str(account.aci), aci=account.aci)
    _lift_limits(account)


def answer_push_challenge(*, account: Account, challenge: str) -> None:
    """`PUT /v1/challenge` with `type: rateLimitPushChallenge`: the challenge last pushed to the
    primary, within five minutes, once; 428 otherwise."""
    ratelimit.check("pushChallengeAttempt", str(account.aci), aci=account.aci)
    with transaction.atomic():
        stored = (
            RateLimitPushChallenge.objects.select_for_update()
            .filter(account=account, expires_at__gt=timezone.now())
            .first()
        )
        if stored is None or not hmac.compare_digest(stored.challenge.encode(), challenge.encode()):
            raise challenge_for(account)
        stored.delete()
    ratelimit.check("pushChallengeSuccess", str(account.aci), aci=account.aci)
    _lift_limits(account)


def send_rate_limit_push_challenge(*, account: Account) -> None:
    """`POST /v1/challenge/push`: 16 random bytes (hex) to the primary by push, valid five minutes;
    404 when the primary has no push token, 429 when out of attempts."""
    primary = _primary(account)
    if primary is None or not (primary.apn_id or primary.gcm_id):
        raise NotFound("the primary device has no push token")
    ratelimit.check("pushChallengeAttempt", str(account.aci), aci=account.aci)
    challenge = secrets.token_hex(16)
    RateLimitPushChallenge.objects.update_or_create(
        account=account, defaults={"challenge": challenge, "expires_at": timezone.now() + PUSH_CHALLENGE_LIFETIME}
    )
    token_type, token = ("apn", primary.apn_id) if primary.apn_id else ("fcm", primary.gcm_id)
    transaction.on_commit(lambda: send_push_challenge(token_type, token, challenge, data_key="rateLimitChallenge"))
