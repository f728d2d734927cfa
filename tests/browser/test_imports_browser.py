from __future__ import annotations

import pytest

from tests.imports.helpers import csv_bytes

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture
def page(live_server, monkeypatch):  # noqa: ANN001, ANN201
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop; set here, not at import, so that it does not leak into
    # the deployment-checklist test of the same session.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

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
        context = browser.new_context(accept_downloads=True, locale="en-US")
        yield context.new_page()
        browser.close()


def test_it_uploads_corrects_a_mapping_watches_progress_and_downloads_the_report(
    live_worker, live_server, page, steward, tmp_path
):
    from imports.models import ImportRun

    path = tmp_path / "customers.csv"
    path.write_bytes(csv_bytes())
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", steward.username)
    page.fill("input[name=password]", "pw-sam_steward")
    page.press("input[name=password]", "Enter")
    page.wait_for_url(f"{live_server.url}/")
    page.click("a[href='/imports/']")
    page.goto(f"{live_server.url}/imports/new/")
    page.fill("input[name=new_source]", "shop")
    page.set_input_files("input[name=file]", str(path))
    page.uncheck("input[name=dry_run]")
    page.click("button[type=submit].primary")
    page.wait_for_url("**/imports/map/**")
    page.select_option("select[name=map-5]", "tags")  # correct one mapping: 备注 → tags
    page.click("button[name=create]")
    page.wait_for_url("**/imports/runs/**")
    import time

    deadline = time.monotonic() + 60
    while page.get_attribute("#run-progress", "value") != "100":  # htmx polling refreshes the bar
        assert time.monotonic() < deadline, "the progress bar never reached 100%"
        page.wait_for_timeout(300)
    page.wait_for_selector("#report-csv", timeout=60_000)
    assert page.inner_text("#run-percent") == "100%"
    with page.expect_download() as download_info:
        page.click("#report-csv")
    report = download_info.value.path().read_bytes().decode("utf-8-sig")
    assert "C003" in report and "'=HYPERLINK(1)" in report
    run = ImportRun.objects.get()
    assert run.status == "completed" and run.mapping["备注"] == "tags"
