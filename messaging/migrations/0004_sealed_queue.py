"""Queued envelopes sealed at rest (messaging/sealing.py): rows queued before this migration are
sealed under the current queue key, and the columns that held envelope fields in clear go."""

from django.db import migrations, models

HOUR_MS = 3_600_000


def seal_rows(apps, schema_editor):
    from messaging.sealing import guid_tag, seal

    QueuedMessage = apps.get_model("messaging", "QueuedMessage")
    rows = QueuedMessage.objects.filter(key_id__isnull=True).only("device_id", "guid", "server_timestamp", "story", "envelope")
    for row in rows.iterator(chunk_size=1000):
        row.key_id, row.envelope = seal(bytes(row.envelope), story=row.story, device_pk=row.device_id)
        row.guid_tag = guid_tag(row.guid)
        row.queued_hour = row.server_timestamp // HOUR_MS
        row.save(update_fields=["key_id", "envelope", "guid_tag", "queued_hour"])


class Migration(migrations.Migration):

    dependencies = [
        ("messaging", "0003_spam_reports"),
    ]

    operations = [
        migrations.AddField("queuedmessage", "guid_tag", models.BinaryField(max_length=16, null=True)),
        migrations.AddField("queuedmessage", "queued_hour", models.IntegerField(null=True)),
        migrations.AddField("queuedmessage", "key_id", models.SmallIntegerField(null=True)),
        migrations.RunPython(seal_rows, migrations.RunPython.noop, elidable=True),
        migrations.RemoveIndex("queuedmessage", "queue_retention"),
        migrations.RemoveField("queuedmessage", "guid"),
        migrations.RemoveField("queuedmessage", "server_timestamp"),
        migrations.RemoveField("queuedmessage", "story"),
        migrations.AlterField("queuedmessage", "guid_tag", models.BinaryField(max_length=16)),
        migrations.AlterField("queuedmessage", "queued_hour", models.IntegerField()),
        migrations.AlterField("queuedmessage", "key_id", models.SmallIntegerField()),
        migrations.AddIndex("queuedmessage", models.Index(fields=["guid_tag"], name="queue_guid")),
        migrations.AddIndex("queuedmessage", models.Index(fields=["queued_hour"], name="queue_retention")),
    ]
