"""An index for real-time matching's "same sound-alike name and birth date" look-up (dedup.realtime)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('crmhub', '0011_customer_search_trigram_indexes'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='customer',
            index=models.Index(fields=['name_pinyin', 'birth_date'], name='crmhub_customer_name_birth'),
        ),
    ]
