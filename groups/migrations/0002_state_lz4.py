from django.db import migrations

# A state is one document per version, about 190 KB for 1,000 members. PostgreSQL compresses it
# with pglz by default, which made storing a change of such a group 6 times slower than lz4 (12.7
# vs 2.1 ms, docs/performance.md) for a slightly larger result. A server built without lz4 keeps pglz.
LZ4 = """
DO $$ BEGIN
    ALTER TABLE groups_groupchange ALTER COLUMN state SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN NULL;
END $$;
"""


def use_lz4(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(LZ4)


class Migration(migrations.Migration):
    dependencies = [("groups", "0001_initial")]

    operations = [migrations.RunPython(use_lz4, migrations.RunPython.noop)]
