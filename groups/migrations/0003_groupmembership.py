import django.db.models.deletion
import orjson
from django.db import migrations, models

# The index of who is in which group, filled from every group's current state (the log row at the
# group's version). Kept here rather than imported, as a migration must not change with the code.


def _kinds(state: dict) -> dict[str, str]:
    kinds = {m["userId"]: "member" for m in state["members"]}
    kinds.update((p["member"]["userId"], "pending") for p in state["membersPendingProfileKey"])
    kinds.update((r["userId"], "requesting") for r in state["membersPendingAdminApproval"])
    kinds.update((b["userId"], "banned") for b in state["membersBanned"])
    return kinds


def fill(apps, schema_editor):
    Group = apps.get_model("groups", "Group")
    GroupChange = apps.get_model("groups", "GroupChange")
    GroupMembership = apps.get_model("groups", "GroupMembership")
    for group in Group.objects.only("id", "version").iterator(chunk_size=500):
        state = GroupChange.objects.filter(group_id=group.id, version=group.version).values_list("state", flat=True).first()
        if state is None:
            continue
        rows = [GroupMembership(group_id=group.id, service_id=user, kind=kind) for user, kind in _kinds(orjson.loads(state)).items()]
        GroupMembership.objects.bulk_create(rows, batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [("groups", "0002_state_lz4")]

    operations = [
        migrations.CreateModel(
            name="GroupMembership",
            fields=[
                ("pk", models.CompositePrimaryKey("group", "service_id", blank=True, editable=False, primary_key=True, serialize=False)),
                ("service_id", models.CharField(max_length=40)),
                (
                    "kind",
                    models.CharField(
                        choices=[("member", "member"), ("pending", "pending"), ("requesting", "requesting"), ("banned", "banned")],
                        max_length=10,
                    ),
                ),
                (
                    "group",
                    models.ForeignKey(
                        db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name="memberships", to="groups.group"
                    ),
                ),
            ],
            options={"indexes": [models.Index(fields=["service_id"], name="groupmembership_service_id")]},
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
