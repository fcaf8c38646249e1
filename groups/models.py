"""Groups (docs/architecture.md, "Groups"): one row per group, one row per version.

The state of a group at each version is one JSON document (Signal's `Group`, as the API shows it)
in that version's log row, beside the change that made it and the server's signature. The group's
row holds only what addresses it, its current version and counts for operators. A change reads one
document and writes one row, whatever the group's size; the current state is the log row at the
group's version. Member service ids are in clear (no zkgroup); title, description, timer, avatar
and profile keys are ciphertext the clients made.

Who is in which group is also indexed (`GroupMembership`, one row per user a current state names),
so an account's groups are found without reading every state: its data report and its deletion.
"""

from django.db import models


class Group(models.Model):
    # The 32-byte group identifier clients derive from the group's master key.
    group_id = models.BinaryField(max_length=32, unique=True)
    version = models.PositiveIntegerField(default=0)
    # Counts of the current state, for the admin (which never shows the encrypted content).
    member_count = models.PositiveIntegerField(default=0)
    pending_count = models.PositiveIntegerField(default=0)
    requesting_count = models.PositiveIntegerField(default=0)
    banned_count = models.PositiveIntegerField(default=0)
    created = models.DateField(auto_now_add=True)  # days only, as elsewhere
    changed = models.DateField(auto_now_add=True)

    class Meta:
        permissions = [("moderate_group", "Can delete abusive groups")]

    def __str__(self):
        from signalserver.wire import b64encode_url

        return b64encode_url(bytes(self.group_id), padded=False)


class GroupChange(models.Model):
    """Version `version` of a group: the change that made it (the serialized actions the server
    signed), the signature, the change epoch, and the state it left."""

    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="changes")
    version = models.PositiveIntegerField()
    actions = models.BinaryField()  # canonical JSON, exactly the bytes signed
    signature = models.BinaryField(max_length=64)  # Ed25519 over `actions`
    change_epoch = models.PositiveSmallIntegerField(default=0)
    state = models.TextField()  # JSON of the group after this change

    class Meta:
        constraints = [models.UniqueConstraint(fields=["group", "version"], name="one_change_per_group_version")]

    def __str__(self):
        return f"{self.group} v{self.version}"


class GroupMembership(models.Model):
    """One user the current state of a group names, and in which list. Written by every change in
    its transaction (groups.services), only for the users whose list the change altered."""

    MEMBER, PENDING, REQUESTING, BANNED = "member", "pending", "requesting", "banned"
    KINDS = [(MEMBER, "member"), (PENDING, "pending"), (REQUESTING, "requesting"), (BANNED, "banned")]

    pk = models.CompositePrimaryKey("group", "service_id")
    # The primary key (group, service id) serves a group's rows; the index, an account's groups.
    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="memberships", db_index=False)
    service_id = models.CharField(max_length=40)  # as the state names it: an ACI, or PNI:<uuid>
    kind = models.CharField(max_length=10, choices=KINDS)

    class Meta:
        indexes = [models.Index(fields=["service_id"], name="groupmembership_service_id")]

    def __str__(self):
        return f"{self.group} {self.kind}"
