from datetime import timedelta

from django.db import migrations, models
from django.utils import timezone


def expire_in_a_refresh_lifetime(apps, schema_editor):
    # Families from before this column: keep them as long as any of their refresh tokens could live.
    TokenFamily = apps.get_model("accounts", "TokenFamily")
    TokenFamily.objects.update(expires_at=timezone.now() + timedelta(days=30))


class Migration(migrations.Migration):
    dependencies = [("accounts", "0005_tokens_and_totp")]

    operations = [
        migrations.AddField(
            model_name="tokenfamily",
            name="expires_at",
            field=models.DateTimeField(db_index=True, default=timezone.now),
            preserve_default=False,
        ),
        migrations.RunPython(expire_in_a_refresh_lifetime, migrations.RunPython.noop),
    ]
