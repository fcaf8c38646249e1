"""Records the accounts and messaging apps no longer need are deleted by the hourly purges: expired
verification sessions (with their numbers), spent link tokens once expired, a deleted account's
number-to-ACI row after the reuse window, expired or revoked token families and expired refresh
tokens, expired push challenges, reviewed spam reports after their retention; what is still needed
stays."""

import os
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import (
    DeletedAccount,
    RateLimitPushChallenge,
    RefreshToken,
    TokenFamily,
    UsedLinkToken,
    VerificationSession,
)
from messaging.models import SpamReport
from signalserver import purges
from tests.factories import DeviceFactory

pytestmark = pytest.mark.django_db


def session(expires_in: timedelta) -> VerificationSession:
    return VerificationSession.objects.create(id=os.urandom(16), number="+12025550100", expires_at=timezone.now() + expires_in)


def family(device, *, expires_in: timedelta, revoked: bool = False) -> TokenFamily:
    return TokenFamily.objects.create(device=device, credential_fingerprint="f" * 16, revoked=revoked, expires_at=timezone.now() + expires_in)


def test_the_hourly_purges_delete_what_can_no_longer_be_used_and_keep_the_rest(settings, monkeypatch):
    now, hour = timezone.now(), timedelta(hours=1)
    expired_session, live_session = session(-timedelta(seconds=1)), session(hour)
    UsedLinkToken.objects.create(identifier="old", expires_at=now - timedelta(seconds=1))
    UsedLinkToken.objects.create(identifier="new", expires_at=now + hour)
    DeletedAccount.objects.create(number="+12025550101", aci=uuid.uuid4(), deleted_at=now - timedelta(days=settings.DELETED_ACCOUNT_ACI_REUSE_DAYS + 1))
    DeletedAccount.objects.create(number="+12025550102", aci=uuid.uuid4(), deleted_at=now - timedelta(days=1))
    device = DeviceFactory()
    expired_family, revoked_family, live_family = family(device, expires_in=-hour), family(device, expires_in=hour, revoked=True), family(device, expires_in=hour)
    for index, (owner, expires_in, spent) in enumerate([(expired_family, hour, False), (revoked_family, hour, False), (live_family, -hour, False), (live_family, hour, True), (live_family, hour, False)]):
        RefreshToken.objects.create(token_hash=bytes([index]) * 32, family=owner, spent=spent, expires_at=now + expires_in)
    RateLimitPushChallenge.objects.create(account=device.account, challenge="c" * 32, expires_at=now - timedelta(seconds=1))
    old = timezone.now() - timedelta(days=settings.SPAM_REPORT_RETENTION_DAYS + 1)  # kept to the day
    for status in ("open", "dismissed", "actioned"):
        report = SpamReport.objects.create(source_aci=uuid.uuid4(), reporter_aci=uuid.uuid4(), message_guid=uuid.uuid4(), status=status)
        SpamReport.objects.filter(pk=report.pk).update(created=old)
    recent = SpamReport.objects.create(source_aci=uuid.uuid4(), reporter_aci=uuid.uuid4(), message_guid=uuid.uuid4(), status="dismissed")

    settings.CELERY_TASK_ALWAYS_EAGER = True  # the embedded run: no beat, the purges run here
    monkeypatch.setattr(purges, "_last_run", -1e9)
    purges.run_if_due()

    assert list(VerificationSession.objects.values_list("id", flat=True)) == [live_session.id]
    assert list(UsedLinkToken.objects.values_list("identifier", flat=True)) == ["new"]
    assert list(DeletedAccount.objects.values_list("number", flat=True)) == ["+12025550102"]
    assert list(TokenFamily.objects.values_list("pk", flat=True)) == [live_family.pk]
    # The spent one stays while its family lives: reusing it must still revoke the family.
    assert sorted(bytes(t)[0] for t in RefreshToken.objects.values_list("token_hash", flat=True)) == [3, 4]
    assert not RateLimitPushChallenge.objects.exists()
    assert sorted(SpamReport.objects.values_list("status", flat=True)) == ["dismissed", "open"]
    assert SpamReport.objects.filter(pk=recent.pk).exists()
