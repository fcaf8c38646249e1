"""Times that outlive their moment kept to the hour or the day (docs/privacy.md): the columns that
held exact times become days or go, and the rows already stored are rounded the same way (push
token times down to the hour; refresh-token, login and username-hold expiries up to the day)."""

from datetime import timedelta

from django.db import migrations, models
from django.db.models.functions import Trunc


def round_stored_times(apps, schema_editor):
    Device = apps.get_model("accounts", "Device")
    Device.objects.exclude(push_token_set_at=None).update(push_token_set_at=Trunc("push_token_set_at", "hour"))
    for name, field in (("TokenFamily", "expires_at"), ("RefreshToken", "expires_at"), ("UsernameClaim", "expires")):
        rows = apps.get_model("accounts", name).objects.exclude(**{field: None})
        if name == "UsernameClaim":
            rows = rows.filter(kind="held")
        rows.update(**{field: Trunc(field, "day") + timedelta(days=1)})


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0012_account_blocks_someone"),
    ]

    operations = [
        migrations.RemoveField(model_name="verificationsession", name="created_at"),
        migrations.RemoveField(model_name="verificationsession", name="updated_at"),
        migrations.RemoveField(model_name="tokenfamily", name="created"),
        migrations.AddField(model_name="tokenfamily", name="serial", field=models.PositiveIntegerField(default=0)),
        migrations.AlterField(model_name="deletedaccount", name="deleted_at", field=models.DateField()),
        migrations.AlterField(model_name="registrationrecoverypassword", name="created", field=models.DateField(auto_now=True)),
        migrations.AlterField(model_name="totpenrolment", name="created", field=models.DateField(auto_now_add=True)),
        migrations.RunPython(round_stored_times, migrations.RunPython.noop),
    ]
