"""Per-device message queues (spec §4.5, §4.10).

A queued message is one row per destination device holding the serialized Envelope the device will
receive. PostgreSQL is the source of truth (docs/architecture.md §4): a message exists once its row commits and
is gone once the device acknowledges it or it expires.
"""

from django.db import models


class QueuedMessage(models.Model):
    id = models.BigAutoField(primary_key=True)  # queue order
    # Removing a device (or its account) removes its queue.
    device = models.ForeignKey("accounts.Device", on_delete=models.CASCADE, related_name="+", db_index=False)
    guid = models.UUIDField(unique=True)
    server_timestamp = models.BigIntegerField()  # ms since the epoch; retention counts from here
    story = models.BooleanField(default=False)
    envelope = models.BinaryField()  # serialized textsecure.Envelope, as delivered

    class Meta:
        indexes = [
            models.Index(fields=["device", "id"], name="queue_order"),
            models.Index(fields=["server_timestamp"], name="queue_retention"),
        ]

    def __str__(self):
        return str(self.guid)


class TrustRoot(models.Model):
    """The sealed-sender trust root: its public key is built into clients (spec §4.8).

    The private half normally stays offline with the operator; only the development pair made by
    the embedded run keeps it here, so that `make run` can certify its own server key.
    """

    public_key = models.BinaryField(max_length=33)
    private_key = models.BinaryField(max_length=32, null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"trust root {self.pk}"


class ServerCertificate(models.Model):
    """A server key certified by the trust root; the newest one signs sender certificates."""

    key_id = models.PositiveIntegerField(unique=True)
    certificate = models.BinaryField()  # serialized ServerCertificate
    private_key = models.BinaryField(max_length=32)  # Ed25519 seed of the server key
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"server certificate {self.key_id}"


class SpamReport(models.Model):
    """A recipient's report that a message was spam (spec §4.9), kept for moderators.

    Only reports whose token proves the message really came from `source_aci` are stored, so
    nobody can pile reports onto an account they never heard from.
    """

    class Status(models.TextChoices):
        OPEN = "open"
        DISMISSED = "dismissed"
        ACTIONED = "actioned"

    source_aci = models.UUIDField(db_index=True)
    reporter_aci = models.UUIDField()
    message_guid = models.UUIDField()
    created = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["reporter_aci", "message_guid"], name="one_report_per_message_and_reporter")
        ]

    def __str__(self):
        return f"report on {self.source_aci}"
