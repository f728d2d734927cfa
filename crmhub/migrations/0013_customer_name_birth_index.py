"""One index for search by pinyin and real-time matching's "same sound-alike name and birth date"
look-up (dedup.realtime): (name_pinyin, birth_date) replaces the index on name_pinyin alone."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('crmhub', '0012_customer_lean_indexes'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='customer',
            index=models.Index(fields=['name_pinyin', 'birth_date'], name='crmhub_customer_name_birth'),
        ),
        migrations.RemoveIndex(
            model_name='customer',
            name='crmhub_customer_name_pinyin',
        ),
    ]
