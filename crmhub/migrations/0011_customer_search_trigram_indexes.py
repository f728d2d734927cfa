"""Indexes for the one search box at 1M customers (crmhub.selectors.customer_search).

On PostgreSQL: pg_trgm and GIN trigram indexes on the name, its pinyin and the company, which
serve ILIKE '%part%' (three characters or more) and equality; and a btree on phone for the rows
that have one. (Fuzzy pinyin is looked up as exact variants on the existing name_pinyin btree:
the similarity operator was too slow at 1M, see BENCHMARKS.md issue 6.) Other databases (SQLite) search with plain
lookups and get nothing here. The model state is unchanged: these are PostgreSQL-only indexes.
"""

from django.db import migrations

INDEXES = [
    ("crmhub_customer_full_name_trgm", "CREATE INDEX IF NOT EXISTS {name} ON crmhub_customer USING gin "
     "(full_name gin_trgm_ops)"),
    ("crmhub_customer_name_pinyin_trgm", "CREATE INDEX IF NOT EXISTS {name} ON crmhub_customer USING gin "
     "(name_pinyin gin_trgm_ops)"),
    ("crmhub_customer_company_trgm", "CREATE INDEX IF NOT EXISTS {name} ON crmhub_customer USING gin "
     "(company gin_trgm_ops)"),
    ("crmhub_customer_phone_present", "CREATE INDEX IF NOT EXISTS {name} ON crmhub_customer (phone) "
     "WHERE phone <> ''"),
]  # fmt: skip


def create(apps, schema_editor) -> None:  # noqa: ANN001
    if schema_editor.connection.vendor != "postgresql":
        return
    # pg_trgm is a trusted extension (PostgreSQL 13+): the database owner may create it.
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, sql in INDEXES:
        schema_editor.execute(sql.format(name=name))


def drop(apps, schema_editor) -> None:  # noqa: ANN001
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, _sql in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("crmhub", "0010_erased_keys")]

    operations = [migrations.RunPython(create, drop)]
