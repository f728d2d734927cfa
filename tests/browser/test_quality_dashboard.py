from __future__ import annotations

import os

import pytest

from tests.browser.conftest import login

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_draws_the_charts_under_the_csp_and_drills_down(page, live_server, steward):
    from crmhub.quality import quality_snapshot_take
    from tests.factories import SourceFactory, SourceRecordFactory

    shop = SourceFactory(code="shop")
    SourceRecordFactory(source=shop, source_key="a", normalized={"mobile": "+8613800000001"})
    SourceRecordFactory(
        source=shop, source_key="b", normalized={"mobile": "12345"}, flags={"mobile": "not a valid phone number"}
    )
    quality_snapshot_take()

    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    login(page, live_server, steward.username, "pw-sam_steward")
    page.goto(f"{live_server.url}/quality/")
    page.wait_for_function(
        "() => window.Chart && ['chart-trend', 'chart-sources', 'chart-backlog']"
        ".every(id => window.Chart.getChart(document.getElementById(id)))"
    )
    assert page.evaluate("window.Chart.getChart(document.getElementById('chart-sources')).data.labels") == ["shop"]
    assert problems == []
    page.click("a[href*='source=shop'][href*='state=flagged']")
    rows = page.locator("#quality-records tbody tr")
    assert rows.count() == 1
    assert "b" == rows.first.locator("td").nth(1).inner_text()
