"""Pairs go to review from a match probability of 0.98 by default (was 0.80): between the two
the queue held namesakes almost only — on the labelled 300k set 12,668 of 21,045 pending pairs
with 3 true ones among them, at 1M a queue of 149k at 1.4 % precision that no steward can work
(docs/matching.md, BENCHMARKS.md). The shipped rule is updated only if nobody changed it."""

from django.db import migrations, models


def narrower_band(apps, schema_editor):  # noqa: ANN001, ANN201
    from importlib import import_module

    name = import_module("dedup.migrations.0003_default_match_rule").DEFAULT_RULE["name"]
    apps.get_model("dedup", "MatchRule").objects.filter(name=name, review_threshold=0.80).update(review_threshold=0.98)


class Migration(migrations.Migration):
    dependencies = [("dedup", "0008_run_merge_parts")]

    operations = [
        migrations.AlterField(
            model_name="matchrule",
            name="review_threshold",
            field=models.FloatField(
                default=0.98,
                help_text="Match probability from which a pair goes to review.",
                verbose_name="review threshold",
            ),
        ),
        migrations.RunPython(narrower_band, migrations.RunPython.noop),
    ]
