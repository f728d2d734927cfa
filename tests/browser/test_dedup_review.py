"""A steward works the review queue with the keyboard and merges a pair field by field, in a
real browser (Debian's chromium through Playwright)."""

from __future__ import annotations

import pytest

from crmhub.choices import CustomerStatus
from crmhub.models import Customer
from dedup.choices import CandidateStatus
from dedup.models import MatchCandidate, Merge
from tests.browser.conftest import login
from tests.dedup.conftest import add_person, make_source

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

EXPLANATION = [
    {"comparison": "name", "fields": ["full_name"], "level": "sound_alike", "weight": 2.1},
    {"comparison": "mobile", "fields": ["mobile"], "level": "exact", "weight": 9.0},
]


def _pair(a, b, score):  # noqa: ANN001, ANN202
    return MatchCandidate.objects.create(left=a, right=b, score=score, rule="default", explanation=EXPLANATION)


@pytest.fixture
def queue(db):  # noqa: ANN001, ANN201
    crm, shop = make_source("crm"), make_source("shop")
    # The CRM is trusted more than the shop: survivorship proposes its names (dedup.survivorship).
    crm.trust_rank = 80
    crm.save()
    p = {
        "zw": add_person(crm, "K1", full_name="张伟", mobile="+8613800000001", email="zw@qq.com", city="上海"),
        "zw2": add_person(shop, "S1", full_name="章伟", mobile="+8613800000001", email="", city="上海市"),
        "bill": add_person(crm, "K2", full_name="Bill Smith", mobile="+8613900000002"),
        "will": add_person(shop, "S2", full_name="William Smith", mobile="+8613900000002"),
        "wf": add_person(crm, "K3", full_name="王芳", mobile="+8613700000003", gender="F"),
        "wf2": add_person(shop, "S3", full_name="王芳", mobile="+8613700000003", gender="M"),
    }
    c = {"zw": _pair(p["zw"], p["zw2"], 0.97), "smith": _pair(p["bill"], p["will"], 0.90)}
    c["wf"] = _pair(p["wf"], p["wf2"], 0.85)
    return p, c


def _current(page) -> str:  # noqa: ANN001
    return page.eval_on_selector(".items .item.current", "el => el.id")


def test_a_steward_works_the_queue_with_the_keyboard_and_merges_a_pair_field_by_field(
    page, live_server, steward, queue
):  # noqa: ANN001
    p, c = queue
    login(page, live_server, steward.username, "pw-" + steward.username)
    assert page.inner_text("#nav-pending") == "3"
    page.click("nav.mainnav a[href='/dedup/review/']")
    page.wait_for_selector(".items .item.current")
    first, second, third = (f"item-{c[k].pk}" for k in ("zw", "smith", "wf"))
    assert _current(page) == first
    # The focused item is visibly marked.
    shadow = page.eval_on_selector(".items .item.current", "el => getComputedStyle(el).boxShadow")
    assert shadow and shadow != "none"

    page.keyboard.press("s")  # skip
    assert _current(page) == second
    assert "skipped" in page.get_attribute(f"#{first}", "class")
    page.keyboard.press("j")
    assert _current(page) == third
    page.keyboard.press("r")  # 王芳 and 王芳 (another gender): not the same person
    page.wait_for_selector(f"#decide-{c['wf'].pk}.decided")
    page.keyboard.press("k")
    assert _current(page) == second
    page.keyboard.press("a")  # Bill and William Smith: the same person
    page.wait_for_selector(f"#decide-{c['smith'].pk}.decided")
    page.wait_for_function("document.getElementById('nav-pending').textContent.trim() === '1'")
    assert MatchCandidate.objects.get(pk=c["wf"].pk).status == CandidateStatus.REJECTED
    assert MatchCandidate.objects.get(pk=c["smith"].pk).status == CandidateStatus.APPROVED
    assert Customer.objects.get(pk=p["will"].pk).merged_into_id == p["bill"].pk

    page.keyboard.press("k")
    assert _current(page) == first
    page.keyboard.press("?")
    page.wait_for_selector("#shortcuts[open]")
    page.keyboard.press("Escape")
    page.wait_for_selector("#shortcuts:not([open])", state="attached")
    page.keyboard.press("x")
    assert page.inner_text("#selected-count") == "1"
    page.keyboard.press("x")
    assert page.inner_text("#selected-count") == "0"

    page.keyboard.press("o")  # open the compare-and-merge screen
    page.wait_for_url(f"**/dedup/candidates/{c['zw'].pk}/compare/")
    # Survivorship proposes the survivor's values; the steward takes the other record's name
    # and city and types an e-mail address.
    assert page.is_checked(f"input[name=choice-full_name][value='{p['zw'].pk}']")
    assert "differs" in page.get_attribute("tr[data-row=full_name]", "class")
    page.check(f"input[name=choice-full_name][value='{p['zw2'].pk}']")
    page.check(f"input[name=choice-city][value='{p['zw2'].pk}']")
    page.check("input[name=choice-email][value=override]")
    page.fill("input[name=override-email]", "Zhang.Wei@Example.com")
    page.fill("textarea[name=note]", "same mobile, same person")
    with page.expect_navigation():
        page.click("#merge-button")
    assert page.url.endswith(f"/customers/{p['zw'].pk}/")

    golden = Customer.objects.get(pk=p["zw"].pk)
    assert golden.full_name == "章伟"
    assert golden.city == "上海市"
    assert golden.email == "zhang.wei@example.com"
    assert golden.mobile == "+8613800000001"  # kept as proposed
    assert Customer.objects.get(pk=p["zw2"].pk).status == CustomerStatus.MERGED
    merge = Merge.objects.get(survivor=golden)
    assert merge.acting_user == steward and merge.note == "same mobile, same person"
    assert "章伟" in page.inner_text("main")
    assert page.inner_text("#nav-pending") == "0"


def test_sales_cannot_open_the_queue(page, live_server, sales):  # noqa: ANN001
    login(page, live_server, sales.username, "pw-" + sales.username)
    assert page.locator("nav.mainnav a[href='/dedup/review/']").count() == 0
    response = page.goto(f"{live_server.url}/dedup/review/")
    assert response.status == 403
