from __future__ import annotations

import pytest

from tests.browser.conftest import login
from tests.factories import CustomerFactory, InteractionFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_logs_in_switches_language_and_finds_a_customer_by_a_reformatted_mobile(page, live_server, support):
    customer = CustomerFactory(full_name="王芳", mobile="+8613800138000", city="上海")
    InteractionFactory(customer=customer, title="退货申请")
    CustomerFactory(full_name="李强", mobile="+8613900139000")

    login(page, live_server, support.username, "pw-sue_support")
    assert page.locator(".stat .label").first.inner_text() == "客户"
    # The quick search takes a mobile however it is written.
    page.fill(".quicksearch input", "+86 138-0013-8000")
    page.press(".quicksearch input", "Enter")
    rows = page.locator("#customer-table tbody tr")
    assert rows.count() == 1
    assert "138****8000" in rows.first.inner_text()  # support sees the mobile masked
    assert "13800138000" not in page.content()
    rows.first.locator("a").click()
    page.wait_for_url(f"{live_server.url}/customers/{customer.pk}/")
    assert "退货申请" in page.locator(".timeline").inner_text()

    page.click("button[value=en]")
    page.wait_for_load_state()
    assert page.locator("h2", has_text="Timeline").count() == 1
