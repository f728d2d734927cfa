"""Review clusters on the candidates (dedup.clusters): the component key, best score and oldest
proposal of each pending candidate's cluster, the queue's partial indexes, and the backfill."""

from django.conf import settings
from django.db import migrations, models


def backfill(apps, schema_editor):
    # Reads and writes only the named columns, so the current code serves this migration.
    from dedup.clusters import clusters_rebuild

    clusters_rebuild()


class Migration(migrations.Migration):

    dependencies = [
        ('crmhub', '0011_customer_search_trigram_indexes'),
        ('dedup', '0005_smaller_blocks_by_default'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='matchcandidate',
            name='cluster',
            field=models.BigIntegerField(blank=True, editable=False, null=True, verbose_name='cluster'),
        ),
        migrations.AddField(
            model_name='matchcandidate',
            name='cluster_created',
            field=models.DateTimeField(blank=True, editable=False, null=True, verbose_name="cluster's oldest proposal"),
        ),
        migrations.AddField(
            model_name='matchcandidate',
            name='cluster_score',
            field=models.FloatField(blank=True, editable=False, null=True, verbose_name="cluster's best score"),
        ),
        migrations.AddIndex(
            model_name='matchcandidate',
            index=models.Index(models.OrderBy(models.F('cluster_score'), descending=True), models.F('cluster'), condition=models.Q(('status', 'pending')), name='dedup_mc_queue_score'),
        ),
        migrations.AddIndex(
            model_name='matchcandidate',
            index=models.Index(condition=models.Q(('status', 'pending')), fields=['cluster_created', 'cluster'], name='dedup_mc_queue_age'),
        ),
        migrations.AddIndex(
            model_name='matchcandidate',
            index=models.Index(condition=models.Q(('status', 'pending')), fields=['cluster'], name='dedup_mc_queue_cluster'),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
