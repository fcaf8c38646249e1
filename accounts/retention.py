"""Deleting what the accounts app no longer needs, hourly (Celery beat; on the embedded run when a
device connects, signalserver.purges): each kind of record as soon as it can no longer be used.

- Verification sessions once expired: a number that never registered leaves nothing behind.
- Spent device-link tokens once the token itself has expired (they only stop its reuse).
- A deleted account's number-to-ACI row after DELETED_ACCOUNT_ACI_REUSE_DAYS.
- Bearer-token families that expired or were revoked, with their refresh tokens, and expired
  refresh tokens (a spent one stays while its family lives: reusing it must revoke the family).
- Rate-limit push challenges once expired.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from accounts.models import DeletedAccount, RateLimitPushChallenge, RefreshToken, TokenFamily, UsedLinkToken
from accounts.verification.services import delete_expired_sessions


def purge_account_records() -> int:
    """Every purge above; how many rows went."""
    now = timezone.now()
    deleted = delete_expired_sessions()
    deleted += UsedLinkToken.objects.filter(expires_at__lte=now).delete()[0]
    deleted += DeletedAccount.objects.filter(deleted_at__lt=now.date() - timedelta(days=settings.DELETED_ACCOUNT_ACI_REUSE_DAYS)).delete()[0]
    deleted += TokenFamily.objects.filter(Q(expires_at__lte=now) | Q(revoked=True)).delete()[0]
    deleted += RefreshToken.objects.filter(expires_at__lte=now).delete()[0]
    deleted += RateLimitPushChallenge.objects.filter(expires_at__lte=now).delete()[0]
    return deleted
