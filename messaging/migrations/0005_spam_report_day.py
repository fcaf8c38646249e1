"""A spam report keeps the day it was made, not the time (docs/privacy.md)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0004_sealed_queue"),
    ]

    operations = [
        migrations.AlterField(model_name="spamreport", name="created", field=models.DateField(auto_now_add=True)),
    ]
