from django.db import migrations


def load_core_fields(apps, schema_editor):
    from crmhub.dictionary import core_field_rows

    FieldDefinition = apps.get_model("crmhub", "FieldDefinition")
    existing = set(FieldDefinition.objects.values_list("name", flat=True))
    FieldDefinition.objects.bulk_create(
        [FieldDefinition(**row) for row in core_field_rows() if row["name"] not in existing]
    )


class Migration(migrations.Migration):
    dependencies = [("crmhub", "0001_initial")]
    operations = [migrations.RunPython(load_core_fields, migrations.RunPython.noop)]
