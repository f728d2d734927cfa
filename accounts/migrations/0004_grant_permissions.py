from django.db import migrations


def grant(apps, schema_editor):
    # Permissions are created by post_migrate; make sure they exist before granting.
    from django.contrib.auth.management import create_permissions

    app_config = apps.get_app_config("accounts")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    export = Permission.objects.get(content_type__app_label="accounts", codename="export_customers")
    approve = Permission.objects.get(content_type__app_label="accounts", codename="approve_exports")
    for name in ("admin", "steward"):
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(export)
    Group.objects.get_or_create(name="admin")[0].permissions.add(approve)
    reveal = Permission.objects.get(content_type__app_label="accounts", codename="reveal_values")
    for name in ("admin", "steward", "support"):
        Group.objects.get_or_create(name=name)[0].permissions.add(reveal)
    view_audit = Permission.objects.get(content_type__app_label="accounts", codename="view_auditevent")
    for name in ("admin", "auditor"):
        Group.objects.get_or_create(name=name)[0].permissions.add(view_audit)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0003_apitoken_exportrequest_and_more"), ("contenttypes", "0002_remove_content_type_name")]
    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
