"""Blocks larger than 10 records are sub-blocked by default (was 100): at a million records
blocks of up to 100 gave 15 candidate pairs per record, at 10 three (see BENCHMARKS.md). The
shipped rule is updated only if nobody changed its block size."""

from django.db import migrations, models


def smaller_blocks(apps, schema_editor):  # noqa: ANN001, ANN201
    from importlib import import_module

    name = import_module("dedup.migrations.0003_default_match_rule").DEFAULT_RULE["name"]
    apps.get_model("dedup", "MatchRule").objects.filter(name=name, max_block_size=100).update(max_block_size=10)


class Migration(migrations.Migration):
    dependencies = [("dedup", "0004_survivorship")]

    operations = [
        migrations.AlterField(
            model_name="matchrule",
            name="max_block_size",
            field=models.PositiveIntegerField(default=10, verbose_name="largest block"),
        ),
        migrations.RunPython(smaller_blocks, migrations.RunPython.noop),
    ]
