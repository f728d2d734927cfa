"""A support user sees masked values, reveals one with a reason; the auditor sees the reveal."""

from __future__ import annotations

import pytest

from tests.factories import CustomerFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _async_unsafe(monkeypatch):  # noqa: ANN001, ANN202
    # Playwright's sync API runs an event loop. Set per test, not at import: a variable left in
    # os.environ would reach `check --deploy` subprocesses of other tests (async.E001).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def browser():  # noqa: ANN201
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


def login(browser, live_server, username: str, password: str):  # noqa: ANN001, ANN201
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    page.console_errors = errors  # type: ignore[attr-defined]
    return page


@pytest.fixture
def baseline():  # noqa: ANN201
    """The data migrations' rows (dictionary, role permissions): an earlier transactional test's flush removes them."""
    from accounts.roles import roles_sync
    from crmhub.services import field_definitions_sync

    field_definitions_sync()
    roles_sync()


def test_it_reveals_a_masked_value_and_the_auditor_sees_it(baseline, browser, live_server, support, auditor):
    customer = CustomerFactory(full_name="张伟", mobile="+8613800138000", email="zhang.wei@example.com")
    page = login(browser, live_server, support.username, "pw-sue_support")
    page.goto(f"{live_server.url}/customers/{customer.pk}/")
    email = page.locator('dd[data-field="email"]')
    assert email.locator(".value").inner_text() == "z***@example.com"
    assert "zhang.wei@example.com" not in page.content()
    email.locator("summary").click()
    email.locator("input[name=reason]").fill("Customer asked to confirm the address on file")
    email.locator("button[type=submit]").click()
    email.locator(".revealed").wait_for()
    assert email.locator(".revealed").inner_text() == "zhang.wei@example.com"
    # The rest of the page stayed masked, and no CSP violation or script error happened.
    assert page.locator('dd[data-field="full_name"] .value').inner_text() == "张*"
    assert not [e for e in page.console_errors if "Content Security Policy" in e or "Refused" in e]

    audit = login(browser, live_server, auditor.username, "pw-otto_auditor")
    audit.goto(f"{live_server.url}/accounts/audit/?kind=reveal")
    row = audit.locator("tr.event-reveal")
    assert row.count() == 1
    text = row.inner_text()
    assert support.username in text and "email" in text and "Customer asked to confirm the address on file" in text
    assert f"customer {customer.pk}" in text
    assert "zhang.wei@example.com" not in audit.content()
