"""The 360° view in a real browser: a support user finds a customer by a differently formatted
mobile from the search box in the navigation and reads the page (masked); an editor restores a
former value from the Changes timeline in one click."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from crmhub.choices import ChangeChannel
from crmhub.context import change_context
from crmhub.editing import customer_update
from crmhub.models import Customer
from tests.browser.conftest import login
from tests.factories import CustomerFactory, InteractionFactory, SourceFactory, SourceRecordFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def customer():  # noqa: ANN201
    customer = CustomerFactory(full_name="张伟", mobile="+8613800138000", company="甲公司", tags=["vip"])
    CustomerFactory(full_name="李娜", mobile="+8613900139000")
    erp = SourceFactory(code="erp", name="ERP")
    SourceRecordFactory(source=erp, customer=customer, source_key="E-1")
    now = timezone.now()
    for i, kind in enumerate(["order", "ticket", "visit", "call"] * 20):
        InteractionFactory(
            customer=customer, source=erp, kind=kind, title=f"{kind} {i}", occurred_at=now - dt.timedelta(days=i)
        )
    with change_context(channel=ChangeChannel.IMPORT, ref="import_run:7"):
        customer.job_title = "采购"
        customer.save()
    return Customer.objects.get(pk=customer.pk)


def test_a_support_user_finds_a_customer_by_a_differently_formatted_mobile(page, live_server, support, customer):
    login(page, live_server, support.username, "pw-" + support.username)
    box = page.locator(".quicksearch input[name=q]")
    box.fill("138 0013 8000")
    with page.expect_navigation():
        box.press("Enter")
    # The result list: one customer, matched by the mobile; its link opens the 360° page.
    expect(page.locator("#customer-table tbody tr")).to_have_count(1)
    with page.expect_navigation():
        page.click(f'tr[data-customer="{customer.pk}"] a')
    page.wait_for_url(f"{live_server.url}/customers/{customer.pk}/")
    assert page.locator('dd[data-field="mobile"] .value').inner_text() == "138****8000"
    assert page.locator("#customer-title").inner_text().startswith("张*")
    assert page.locator('[data-tag="vip"]').count() == 1
    assert page.locator("#source-records").inner_text().count("E-1") == 1
    assert page.locator("ol.timeline li").count() == 50
    assert page.locator("form.edit-form").count() == 0  # support reads, does not edit
    # The timeline filters by channel without leaving the page (htmx swaps the list).
    page.check('.timeline-filter input[value="call"]')
    expect(page.locator('ol.timeline li:not([data-kind="call"])')).to_have_count(0)
    expect(page.locator('ol.timeline li[data-kind="call"]')).to_have_count(20)
    # The result list, from the list page's own box: a different format again, then a click.
    page.goto(f"{live_server.url}/customers/")
    page.fill(".filters input[name=q]", "+86-138-0013-8000")
    expect(page.locator("#customer-table tbody tr")).to_have_count(1)  # htmx swapped the results in
    expect(page.locator(f'tr[data-customer="{customer.pk}"]')).to_have_count(1)
    with page.expect_navigation():
        page.click(f'tr[data-customer="{customer.pk}"] a')
    page.wait_for_url(f"{live_server.url}/customers/{customer.pk}/")


def test_an_editor_restores_a_former_value_from_the_timeline(page, live_server, steward, customer):
    customer_update(
        customer_id=customer.pk, values={"company": "乙公司"}, expected_version=customer.version, acting_user=steward
    )
    login(page, live_server, steward.username, "pw-" + steward.username)
    page.goto(f"{live_server.url}/customers/{customer.pk}/")
    assert page.locator('dd[data-field="company"] .value').inner_text() == "乙公司"
    entry = page.locator('#history li[data-field="company"]').first
    assert entry.locator(".old").inner_text() == "甲公司"
    with page.expect_navigation():
        entry.locator("form.restore button").click()
    assert page.locator('dd[data-field="company"] .value').inner_text() == "甲公司"
    assert page.locator(".messages li.success").count() == 1
    latest = Customer.history.filter(id=customer.pk).order_by("-history_id").first()
    assert latest.change_ref.startswith("restore:") and latest.history_user_id == steward.pk
    # The restore is itself in the timeline, newest first, with who did it.
    first = page.locator("#history > ol > li").first
    assert "restore:" in first.inner_text() and steward.username in first.inner_text()
