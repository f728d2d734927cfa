"""The search's trigram indexes hold active customers only (crmhub 0016), and every search lookup
that needs one still gets it: a partial index only serves a query whose condition implies
``status = 'active'``, so these plans are the proof that each query says so in a form the planner
matches (Django inlines the value client-side)."""

from __future__ import annotations

import pytest
from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import Q

from crmhub import selectors
from crmhub.models import Customer
from tests.conftest import make_user

# The indexes checked here are PostgreSQL's (pg_trgm GIN, partial); SQLite has none of them and its
# own planner. CI's PostgreSQL pass runs these EXPLAIN checks.
pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="pg_trgm partial-index plans are PostgreSQL's (SQLite has no such index)"
)

TRIGRAM = {"crmhub_customer_full_name_trgm", "crmhub_customer_name_pinyin_trgm", "crmhub_customer_company_trgm"}
FAMILY = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平"
PINYIN = ["wang", "li", "zhang", "liu", "chen", "yang", "huang", "zhao", "wu", "zhou"]
WORDS = ["星辰", "恒信", "嘉禾", "博雅", "华联", "天诚", "远景", "金桥", "宏达", "新源"]


def _plan(qs) -> str:  # noqa: ANN001
    """The plan of ``qs`` with sequential and plain index scans priced out, leaving bitmap scans of
    indexes that match a condition: a few thousand rows are cheaper to read whole (or through any
    btree), and what matters here is whether the planner *may* use a partial trigram index for the
    query, which it may only if the query's conditions imply the index's predicate."""
    sql, params = qs.query.sql_with_params()
    with connection.cursor() as cursor:
        for setting in ("enable_seqscan", "enable_indexscan", "enable_indexonlyscan"):
            cursor.execute(f"SET LOCAL {setting} = off")
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def _indexes_used(qs) -> set[str]:  # noqa: ANN001
    return {w for w in _plan(qs).replace("(", " ").split() if w.startswith("crmhub_customer_")}


@pytest.fixture
def customers(django_user_model):  # noqa: ANN001, ANN201
    """4,000 customers with varied names, pinyin and companies, one in four a merge tombstone, analysed."""
    owner = make_user(django_user_model, "sales1", "sales")
    rows = []
    for n in range(4000):
        a, b, c = n % 20, (n // 20) % 20, (n // 400) % 10
        rows.append(
            Customer(
                full_name=FAMILY[a] + GIVEN[b] + GIVEN[c],
                name_pinyin=f"{PINYIN[a % 10]}{PINYIN[b % 10]}{n:04d}",
                company=f"{WORDS[a % 10]}{WORDS[b % 10]}{WORDS[c]}有限公司" if n % 3 == 0 else "",
                team="east" if n % 10 == 0 else "",
                owner=owner if n % 50 == 0 else None,
            )
        )
    Customer.objects.bulk_create(rows)
    survivor = rows[0].pk
    Customer.objects.filter(pk__in=[r.pk for r in rows[1::4]]).update(status="merged", merged_into_id=survivor)
    with connection.cursor() as cursor:
        # The rows wait in the GIN indexes' pending lists until a vacuum; the planner's estimates
        # read the indexes' statistics, so move them into the indexes proper first.
        for name in sorted(TRIGRAM):
            cursor.execute("SELECT gin_clean_pending_list(%s::regclass)", [name])
        cursor.execute("ANALYZE crmhub_customer")
    return owner


def _step_indexes(user, q: str) -> dict[int, set[str]]:  # noqa: ANN001
    """The trigram indexes each step of a ranked search of ``q`` reads, by rank (as
    ``customer_search`` runs them: the user's customers, the step's condition, no order, a limit)."""
    qs = selectors.customer_list(user=user)
    used: dict[int, set[str]] = {}
    for rank, condition in selectors._search_steps(user, q):
        try:
            step = qs.filter(condition).values_list("pk", flat=True).order_by()[: selectors.SEARCH_LIMIT]
            used.setdefault(rank, set()).update(_indexes_used(step) & TRIGRAM)
        except EmptyResultSet:
            continue
    return used


@pytest.mark.django_db
def test_the_trigram_indexes_hold_only_active_customers(customers):
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE indexname = ANY(%s)", [sorted(TRIGRAM)])
        definitions = dict(cursor.fetchall())
    assert set(definitions) == TRIGRAM
    for name, definition in definitions.items():
        assert "gin_trgm_ops" in definition, name
        assert "WHERE ((status)::text = 'active'::text)" in definition, name


@pytest.mark.django_db
def test_it_finds_names_and_their_parts_through_the_partial_indexes(customers, admin_user):
    # Exact characters and a part of three or more characters: the full_name index.
    used = _step_indexes(admin_user, "张伟敏")
    assert "crmhub_customer_full_name_trgm" in used[selectors.RANK_NAME]
    assert "crmhub_customer_full_name_trgm" in used[selectors.RANK_PART]
    # Two characters have no trigram of their own: the step looks through the pinyin's trigrams and
    # checks the characters (the planner may take either column's index for it).
    assert _step_indexes(admin_user, "伟敏")[selectors.RANK_PART]
    # Pinyin typed in Latin letters: a part of the pinyin.
    assert "crmhub_customer_name_pinyin_trgm" in _step_indexes(admin_user, "zhangwang")[selectors.RANK_PART]


@pytest.mark.django_db
def test_it_finds_companies_through_the_partial_index(customers, admin_user):
    assert "crmhub_customer_company_trgm" in _step_indexes(admin_user, "嘉禾博雅")[selectors.RANK_COMPANY]


@pytest.mark.django_db
def test_an_export_of_a_search_uses_the_partial_indexes(customers, admin_user):
    # Unranked (exports): every step ORed together beside the active filter, in one query. (A sales
    # user's scope only adds conditions beside it, which cannot stop it implying the predicate.)
    exported = selectors.customer_search(user=admin_user, q="张伟敏", ranked=False).values_list("pk", flat=True)
    assert "crmhub_customer_full_name_trgm" in _indexes_used(exported)


@pytest.mark.django_db
def test_a_lookup_without_the_active_condition_cannot_use_them(customers):
    # The reason every reader must keep ``status = 'active'``: without it the partial index is no use.
    everyone = Customer.objects.filter(Q(full_name="张伟敏")).values_list("pk", flat=True)
    assert not _indexes_used(everyone) & TRIGRAM
