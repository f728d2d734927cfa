"""The customer lookups the code makes are served by the customer indexes, including the partial
ones (crmhub 0012): a partial index only serves a query whose condition implies its predicate."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models import Q

from crmhub.models import Customer
from tests.conftest import make_user

# The indexes checked here are PostgreSQL plans (partial predicates, bitmap scans); SQLite has its own
# planner and is never the scale target. CI's PostgreSQL pass runs these against the real server.
pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="partial-index plans are PostgreSQL's (SQLite plans differently)"
)


def _indexes_used(qs) -> set[str]:  # noqa: ANN001
    sql, params = qs.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    return {word for word in plan.replace("(", " ").split() if word.startswith("crmhub_customer_")}


@pytest.fixture
def customers(django_user_model):  # noqa: ANN001, ANN201
    """2,000 customers, the mostly-empty columns set on 1 in 20 and 1 in 20 merged, analysed: enough
    rows for the planner to choose between reading the table and an index as it would at scale."""
    owner = make_user(django_user_model, "sales1", "sales")

    def mostly_empty(n: int) -> dict:
        if n % 20:
            return {}
        values = {"member_no": f"M{n}", "wechat_unionid": f"U{n}", "id_number_hash": f"h{n}"}
        return {**values, "team": "east", "region": "sh", "owner": owner}

    rows = [
        Customer(
            full_name=f"客户{n}",
            name_pinyin=f"kehu{n}",
            mobile=f"+86138{n:08d}",
            email=f"user{n}@example.com",
            **mostly_empty(n),
        )
        for n in range(2000)
    ]
    Customer.objects.bulk_create(rows)
    first = rows[0].pk
    Customer.objects.filter(pk__in=[r.pk for r in rows[1::20]]).update(status="merged", merged_into_id=first)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE crmhub_customer")
    return owner


@pytest.mark.django_db
def test_it_serves_real_time_matching_and_identity_search_from_the_indexes(customers):
    conditions = (
        Q(mobile="+8613800000040")
        | Q(email="user40@example.com")
        | Q(id_number_hash="h40")
        | Q(wechat_unionid="U40")
        | Q(member_no__in=["m40", "M40"])
        | Q(name_pinyin="kehu40", birth_date="1990-01-01")
    )
    used = _indexes_used(Customer.objects.active().filter(conditions).values_list("pk", flat=True))
    assert used >= {
        "crmhub_customer_mobile",
        "crmhub_customer_email",
        "crmhub_customer_id_number_hash",
        "crmhub_customer_wechat_unionid",
        "crmhub_customer_member_no",
        "crmhub_customer_name_birth",
    }


@pytest.mark.django_db
def test_it_serves_scoping_and_tombstones_from_the_partial_indexes(customers):
    user = customers
    scoped = Customer.objects.active().filter(Q(owner=user) | Q(team="east") | Q(region="sh"))
    assert _indexes_used(scoped.values_list("pk", flat=True)) >= {
        "crmhub_customer_owner",
        "crmhub_customer_team",
        "crmhub_customer_region",
    }
    assert "crmhub_customer_inactive" in _indexes_used(Customer.objects.filter(status="merged").values_list("pk"))
    many = list(range(1, 501))  # more ids than the planner expands into single comparisons
    assert "crmhub_customer_merged_into" in _indexes_used(
        Customer.objects.filter(merged_into_id__in=many).values_list("pk")
    )
