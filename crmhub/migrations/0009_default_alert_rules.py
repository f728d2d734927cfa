from django.db import migrations

# Alerts that need no threshold are on from the start, so a paused connector or a disabled
# webhook subscription always shows up on the alerts page; admins add recipients.
DEFAULT_RULES = [
    ("Connector paused", "connector_paused"),
    ("Webhook subscription disabled", "webhook_disabled"),
]


def create_default_rules(apps, schema_editor):
    AlertRule = apps.get_model("crmhub", "AlertRule")
    for name, kind in DEFAULT_RULES:
        if not AlertRule.objects.filter(kind=kind).exists():
            AlertRule.objects.create(name=name, kind=kind)


class Migration(migrations.Migration):
    dependencies = [("crmhub", "0008_historical_customer_lean_indexes")]
    operations = [migrations.RunPython(create_default_rules, migrations.RunPython.noop)]
