"""What operators set at run time in the admin (docs/architecture.md §7): rate-limit overrides, banned IP
ranges, and the record of every operator action. Services read the first two through
`signalserver.operator_settings`, which notices a change on the next request of every node."""

import ipaddress

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from signalserver.limiters import LIMITERS


def validate_network(value: str) -> None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValidationError("not an IP address or range (CIDR), e.g. 203.0.113.0/24") from None


class LimitOverride(models.Model):
    """Replaces a limiter's default bucket for everyone (no account) or for one account."""

    limiter = models.CharField(max_length=64, choices=sorted((name, name) for name in LIMITERS))
    account = models.ForeignKey(
        "accounts.Account",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        help_text="Empty: the limiter's new default for everyone. Per-account overrides apply to limiters "
        "keyed by the account (ACI, or the sender of a message).",
    )
    bucket_size = models.PositiveBigIntegerField(help_text="permits (bytes for byte limiters) the bucket holds")
    permit_seconds = models.FloatField(help_text="seconds for one permit to come back (the leak rate)")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["limiter", "account"], name="one_override_per_account"),
            models.UniqueConstraint(
                fields=["limiter"], condition=models.Q(account=None), name="one_global_override"
            ),
            models.CheckConstraint(condition=models.Q(permit_seconds__gt=0), name="override_permit_positive"),
            models.CheckConstraint(condition=models.Q(bucket_size__gt=0), name="override_bucket_positive"),
        ]

    def __str__(self):
        scope = f"account {self.account_id}" if self.account_id else "everyone"
        return f"{self.limiter} for {scope}: {self.bucket_size} per {self.permit_seconds:g} s"


class IpBan(models.Model):
    """An address range refused before authentication, on HTTP and the WebSocket upgrade."""

    network = models.CharField(max_length=43, unique=True, validators=[validate_network])
    reason = models.CharField(max_length=200, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    def save(self, *args, **kwargs):
        self.network = str(ipaddress.ip_network(self.network, strict=False))  # one spelling per range
        super().save(*args, **kwargs)

    def __str__(self):
        return self.network


class OperatorAction(models.Model):
    """Who did what, when: every ban, unban, limit change and bucket reset made in the admin."""

    # PROTECT: an operator with a history is deactivated, not deleted. None: `manage.py`.
    operator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    action = models.CharField(max_length=40)
    target = models.CharField(max_length=80)
    detail = models.CharField(max_length=200, blank=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M} {self.operator} {self.action} {self.target}"


def record_operator_action(operator, action: str, target, detail: str = "") -> None:
    OperatorAction.objects.create(
        operator=operator if operator is not None and operator.is_authenticated else None,
        action=action,
        target=str(target)[:80],
        detail=detail[:200],
    )
