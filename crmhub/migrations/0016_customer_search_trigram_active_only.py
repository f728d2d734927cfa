"""The search's trigram indexes (0011) keep active customers only.

The search only ever looks among active customers (``crmhub.selectors.customer_list``), and nothing
else reads these indexes, yet a merge tombstone got a new entry in all three GIN indexes (a
tombstone's update can never be heap-only: ``status`` is in a partial index). Partial indexes spare
tombstones and erased customers those entries; every search query carries ``status = 'active'``
as a literal (Django binds parameters client-side), which the planner needs to use them.
PostgreSQL only, like 0011; the model state is unchanged.
"""

from django.db import migrations

COLUMNS = {
    "crmhub_customer_full_name_trgm": "full_name",
    "crmhub_customer_name_pinyin_trgm": "name_pinyin",
    "crmhub_customer_company_trgm": "company",
}


def _recreate(schema_editor, where: str) -> None:  # noqa: ANN001
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, column in COLUMNS.items():
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")
        schema_editor.execute(f"CREATE INDEX {name} ON crmhub_customer USING gin ({column} gin_trgm_ops){where}")


def active_only(apps, schema_editor) -> None:  # noqa: ANN001
    _recreate(schema_editor, " WHERE status = 'active'")


def every_customer(apps, schema_editor) -> None:  # noqa: ANN001
    _recreate(schema_editor, "")


class Migration(migrations.Migration):
    dependencies = [("crmhub", "0015_field_rules_help")]

    operations = [migrations.RunPython(active_only, every_customer)]
