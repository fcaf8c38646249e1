from django.db import models


class PushDay(models.Model):
    """What the push services made of a day's pushes, per platform: counts only, for operators."""

    day = models.DateField()
    platform = models.CharField(max_length=8, choices=[("apn", "APNs"), ("fcm", "FCM")])
    sent = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0, help_text="Refused or unreachable (attempts, retries included)")
    invalidated = models.PositiveIntegerField(default=0, help_text="Tokens the service called invalid")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "platform"], name="push_day_per_platform")]
        ordering = ["-day", "platform"]
        verbose_name = "push day"

    def __str__(self):
        return f"{self.day} {self.platform}"
