"""The tables an import writes a row into per record carry only the indexes some reader needs
(crmhub 0014): every lookup the code makes in them is still served by an index. The source
records' own ``source_id`` index, and the history tables' ``history_date`` and source indexes
are gone (nothing asks for them); the history tables' ``history_user`` index keeps only rows
that have a user."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models.deletion import Collector

from crmhub.models import Customer, Source, SourceRecord
from tests.conftest import make_user

# The indexes checked here are PostgreSQL's (partial, dropped by crmhub 0014 there); CI's PostgreSQL
# pass runs these EXPLAIN checks.
pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="partial-index plans are PostgreSQL's (SQLite plans differently)"
)

N = 3000


def _plan(sql: str, params=()) -> str:  # noqa: ANN001
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def _indexes_used(qs) -> set[str]:  # noqa: ANN001
    sql, params = qs.query.sql_with_params()
    plan = _plan(sql, params)
    return {word for word in plan.replace("(", " ").split() if word.startswith("crmhub_")} - {
        "crmhub_sourcerecord",
        "crmhub_historicalsourcerecord",
        "crmhub_historicalcustomer",
    }


def _indexes(table: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", [table])
        return {row[0] for row in cursor.fetchall()}


@pytest.fixture
def imported(django_user_model):  # noqa: ANN001, ANN201
    """N customers and source records in two sources with their "+" history rows, as an import run
    by the system writes them (no user), plus a few rows changed by a steward; analysed."""
    steward = make_user(django_user_model, "steward1", "steward")
    sources = [Source.objects.create(code=f"s{i}", name=f"S{i}") for i in range(2)]
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO crmhub_customer (full_name, family_name, given_name, name_pinyin, gender, mobile, phone, "
            "email, id_number, id_number_hash, member_no, wechat_openid, wechat_unionid, company, job_title, province, "
            "city, district, address, postcode, country, tags, custom, status, version, quality_flags, team, region, "
            "created_at, updated_at) SELECT 'n' || g, '', '', '', '', '', '', '', '', '', '', '', '', '', '', '', '', "
            "'', '', '', '', '[]', '{}', 'active', 1, '{}', '', '', now(), now() FROM generate_series(1, %s) g",
            [N],
        )
        cursor.execute(
            "INSERT INTO crmhub_sourcerecord (source_id, source_key, customer_id, raw, normalized, flags, record_hash, "
            "first_seen_at, last_seen_at, updated_at) SELECT CASE WHEN c.id %% 2 = 0 THEN %s ELSE %s END, 'k' || c.id, "
            "c.id, '{}', '{}', '{}', '', now(), now(), now() FROM crmhub_customer c",
            [sources[0].pk, sources[1].pk],
        )
        for table, live in (
            ("crmhub_historicalcustomer", "crmhub_customer"),
            ("crmhub_historicalsourcerecord", "crmhub_sourcerecord"),
        ):
            model = {"crmhub_customer": Customer, "crmhub_sourcerecord": SourceRecord}[live]
            columns = [f.column for f in model.history.model._meta.concrete_fields if f.attname != "history_id"]
            shared = [c for c in columns if c in {f.column for f in model._meta.concrete_fields}]
            extra = {
                "history_date": "now()",
                "history_type": "'+'",
                "history_change_reason": "NULL",
                "change_channel": "'import'",
                "change_ref": "'import_run:1'",
                # One row in 100 changed by the steward, the rest by the system.
                "history_user_id": f"CASE WHEN t.id % 100 = 0 THEN {steward.pk} END",
            }
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(shared + list(extra))}) "  # noqa: S608 - our table names
                f"SELECT {', '.join('t.' + c for c in shared)}, {', '.join(extra.values())} FROM {live} t"
            )
        for table in (
            "crmhub_customer",
            "crmhub_sourcerecord",
            "crmhub_historicalcustomer",
            "crmhub_historicalsourcerecord",
        ):
            cursor.execute(f"ANALYZE {table}")
    return steward, sources


@pytest.mark.django_db
def test_the_import_tables_keep_only_the_indexes_something_reads(imported):
    assert "crmhub_sourcerecord_unique_source_key" in _indexes("crmhub_sourcerecord")
    assert not any("source_id" in name for name in _indexes("crmhub_sourcerecord"))
    for table in ("crmhub_historicalcustomer", "crmhub_historicalsourcerecord"):
        assert not any("history_date" in name or "history_user_id" in name for name in _indexes(table)), table
    assert not any("source_id" in name for name in _indexes("crmhub_historicalsourcerecord"))


@pytest.mark.django_db
def test_source_record_lookups_by_source_use_the_unique_key(imported):
    _steward, (source, _other) = imported
    keys = ["k2", "k4", "k6"]
    # The writers' classification (imports.writers ``existing``), pushes, exports per source.
    assert "crmhub_sourcerecord_unique_source_key" in _indexes_used(
        SourceRecord.objects.filter(source_id=source.pk, source_key__in=keys).values_list("pk", flat=True)
    )
    plan = _plan(
        "SELECT source_key, id FROM crmhub_sourcerecord WHERE source_id = %s AND source_key = ANY(%s)",
        [source.pk, keys],
    )
    assert "crmhub_sourcerecord_unique_source_key" in plan
    # A source's records a page at a time in key order (exports, the source's record list).
    assert "crmhub_sourcerecord_unique_source_key" in _indexes_used(
        SourceRecord.objects.filter(source_id=source.pk).order_by("source_key").values_list("pk", flat=True)[:50]
    )


@pytest.mark.django_db
def test_history_lookups_use_the_remaining_indexes(imported):
    steward, _sources = imported
    record = SourceRecord.objects.order_by("pk")[10]
    history = SourceRecord.history.model
    # A record's and a customer's history (history pages, restore, privacy, unmerge), newest first.
    assert "crmhub_historicalsourcerecord_id_ba70eb5f" in _indexes_used(history.objects.filter(id=record.pk))
    assert "crmhub_historicalcustomer_id_ba58522e" in _indexes_used(
        Customer.history.filter(id=record.customer_id).order_by("history_date", "history_id")
    )
    assert "crmhub_historicalcustomer_id_ba58522e" in _indexes_used(
        Customer.history.model.objects.filter(id__in=[record.customer_id, record.customer_id + 1])
    )
    # dedup.selectors: the records a customer was first created with.
    assert "crmhub_historicalsourcerecord_customer_id_fb5cac16" in _indexes_used(
        history.objects.filter(history_type="+", customer_id__in=[record.customer_id])
    )
    # Deleting a user sets the history rows' user to NULL: the partial indexes find them.
    for model, index in (
        (Customer.history.model, "crmhub_histcustomer_user"),
        (history, "crmhub_histsourcerecord_user"),
    ):
        collector = Collector(using="default")
        field = model._meta.get_field("history_user")
        qs = collector.related_objects(model, [field], [steward])
        assert index in _indexes_used(qs), model
        assert qs.count() == N // 100
