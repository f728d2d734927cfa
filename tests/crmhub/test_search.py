"""The one search box: identities in any format, names in characters or pinyin (sound-alikes,
prefixes, parts, typos), companies; ranking; and the rule that a field seen masked is searched
only by its exact value. Runs on SQLite and PostgreSQL alike (the same lookups; PostgreSQL adds
indexes)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from crmhub import selectors
from crmhub.pinyin import confusion_variants, is_pinyin, typo_variants
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def ids(user, q: str) -> list[int]:  # noqa: ANN001
    return [c.pk for c in selectors.customer_search(user=user, q=q)]


@pytest.fixture
def people(db):  # noqa: ANN001, ANN201
    return {
        "zhang": CustomerFactory(full_name="张伟", name_pinyin="zhangwei", mobile="+8613800138000", member_no="M1001"),
        "zhang2": CustomerFactory(full_name="章伟", name_pinyin="zhangwei", mobile="+8613900139000"),
        "zhangmin": CustomerFactory(full_name="张伟民", name_pinyin="zhangweimin", mobile="+8613700137000"),
        "ouyang": CustomerFactory(full_name="欧阳娜娜", name_pinyin="ouyangnana", email="nana@example.com"),
        "smith": CustomerFactory(full_name="John Smith", name_pinyin="johnsmith", company="Acme Widgets Ltd"),
        "liu": CustomerFactory(full_name="刘洋", name_pinyin="liuyang", id_number="11010519491231002X"),
        "firm": CustomerFactory(full_name="王芳", name_pinyin="wangfang", company="M1001 贸易有限公司"),
    }


@pytest.mark.parametrize(
    "typed", ["13800138000", "138 0013 8000", "138-0013-8000", "+86 138 0013 8000", "0086 13800138000", "(138)00138000"]
)
def test_it_finds_a_mobile_however_it_is_written(steward, support, people, typed):
    assert ids(steward, typed) == [people["zhang"].pk]
    assert ids(support, typed) == [people["zhang"].pk]  # support sees mobiles masked: exact lookups still work


def test_it_finds_email_id_number_and_member_number(steward, people):
    assert ids(steward, "NANA@Example.com") == [people["ouyang"].pk]
    assert ids(steward, "11010519491231002x") == [people["liu"].pk]
    assert ids(steward, "110105 19491231 002X") == [people["liu"].pk]
    # An identity hit ranks before a company that merely contains the same text.
    assert ids(steward, "M1001") == [people["zhang"].pk, people["firm"].pk]


def test_it_finds_names_in_characters_pinyin_and_sound_alikes(steward, people):
    both = {people["zhang"].pk, people["zhang2"].pk}
    # The exact characters first, then the sound-alike, then the longer name starting so.
    assert ids(steward, "张伟") == [people["zhang"].pk, people["zhang2"].pk, people["zhangmin"].pk]
    assert ids(steward, "章伟")[0] == people["zhang2"].pk
    assert set(ids(steward, "章伟")[:2]) == both
    assert set(ids(steward, "zhangwei")[:2]) == both
    assert set(ids(steward, "Zhang Wei")[:2]) == both
    assert set(ids(steward, "張偉")[:2]) == both  # traditional characters
    assert ids(steward, "zhangweim")[0] == people["zhangmin"].pk  # partial pinyin
    assert ids(steward, "阳娜") == [people["ouyang"].pk]  # part of a name
    assert ids(steward, "john") == [people["smith"].pk]  # Western names: by their start
    assert ids(steward, "Widgets") == [people["smith"].pk]  # company


def test_it_forgives_pinyin_typos_and_regional_confusions(steward, people):
    both = {people["zhang"].pk, people["zhang2"].pk}
    assert set(ids(steward, "zhangwie")) >= both  # two letters swapped
    assert set(ids(steward, "zangwei")) >= both  # z for zh
    assert set(ids(steward, "zhanwei")) >= both  # an for ang
    assert people["ouyang"].pk in ids(steward, "ouyanglana")  # l for n
    assert people["liu"].pk in ids(steward, "niuyang")
    ranked = list(selectors.customer_search(user=steward, q="zhangwie"))
    assert ranked[0].search_rank > selectors.RANK_PART  # a typo ranks after every exact kind of match


def test_it_searches_masked_fields_only_by_their_exact_value(support, people):
    # Support sees names masked (张*): the exact name finds the person ...
    assert ids(support, "张伟") == [people["zhang"].pk]
    # ... but no sound-alike, pinyin, prefix, part or typo, which would tell more than the page shows.
    assert ids(support, "章伟") == [people["zhang2"].pk]  # not 张伟, who only sounds alike
    for q in ["zhangwei", "张", "zhangwie", "阳娜", "欧阳", "zangwei"]:
        assert ids(support, q) == [], q
    # Company is public: support searches it by part.
    assert ids(support, "Widgets") == [people["smith"].pk]


def test_it_caps_and_ranks_the_api_results_too(steward, people):
    client = APIClient()
    client.force_authenticate(steward)
    results = client.get("/api/v1/customers/", {"q": "张伟"}).json()["results"]
    assert [r["id"] for r in results] == [people["zhang"].pk, people["zhang2"].pk, people["zhangmin"].pk]
    ordered = client.get("/api/v1/customers/", {"q": "张伟", "ordering": "id"}).json()["results"]
    assert [r["id"] for r in ordered] == sorted(r["id"] for r in results)


def test_it_lists_results_with_why_they_matched(client, support, people):
    client.force_login(support)
    response = client.get("/customers/", {"q": "138 0013 8000"}, HTTP_ACCEPT_LANGUAGE="en")
    assert [row[0].pk for row in response.context["rows"]] == [people["zhang"].pk]
    assert "mobile, email, ID or member no." in response.content.decode()


def test_it_keeps_a_search_to_a_few_queries(steward, people, django_assert_max_num_queries):
    CustomerFactory.create_batch(30, full_name="张伟", name_pinyin="zhangwei")
    with django_assert_max_num_queries(14):
        assert len(list(selectors.customer_search(user=steward, q="zhangwie")[:50])) > 30


def test_pinyin_variants_stay_pinyin():
    assert is_pinyin("zhangwei") and is_pinyin("ouyangnana") and not is_pinyin("jamessmith")
    assert {"zangwei", "zhanwei"} <= confusion_variants("zhangwei")
    variants = typo_variants("zhangwei")
    assert "zhangwen" in variants and "zhagnwei" not in variants  # the latter is no pinyin: nobody is called that
    assert all(is_pinyin(v) for v in variants)
    # The typed slip is undone: "zhangwie" is not pinyin, so its swaps and deletions are tried.
    assert "zhangwei" in typo_variants("zhangwie")
    assert typo_variants("jamessmith") >= {"jamesmith", "jmaessmith"}
