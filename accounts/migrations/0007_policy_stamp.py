import uuid

from django.db import migrations, models


def stamp_create(apps, schema_editor):  # noqa: ANN001, ANN201
    apps.get_model("accounts", "PolicyStamp").objects.update_or_create(pk=1, defaults={"token": uuid.uuid4().hex})


class Migration(migrations.Migration):
    dependencies = [("accounts", "0006_audit_kinds_export_expiry")]

    operations = [
        migrations.CreateModel(
            name="PolicyStamp",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("token", models.CharField(max_length=32)),
            ],
            options={"verbose_name": "policy stamp", "verbose_name_plural": "policy stamps"},
        ),
        migrations.RunPython(stamp_create, migrations.RunPython.noop),
    ]
