"""The review queue in a real browser: explanation table, approve and reject buttons (htmx)."""

from __future__ import annotations

import os

import pytest

from dedup.choices import CandidateStatus
from dedup.models import MatchCandidate
from tests.dedup.conftest import add_person, make_source

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True, scope="module")
def _async_unsafe():  # noqa: ANN202
    # Playwright's sync API runs an event loop; Django must allow ORM calls beside it. Set for
    # this module only: left behind, it would fail the deployment check other tests run.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page():  # noqa: ANN201
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
        page = browser.new_page()
        yield page
        browser.close()


def _login(page, live_server, username: str) -> None:  # noqa: ANN001
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "pw-" + username)
    with page.expect_navigation():
        page.press("input[name=password]", "Enter")


def test_a_steward_approves_and_rejects_from_the_queue(page, live_server, steward):
    source = make_source()
    a = add_person(source, "K1", full_name="张伟", mobile="+8613800000001")
    b = add_person(source, "K2", full_name="章伟", mobile="+8613800000001")
    c = add_person(source, "K3", full_name="王芳", mobile="+8613700000003")
    d = add_person(source, "K4", full_name="李丽", mobile="+8613700000003")
    first = MatchCandidate.objects.create(
        left=a,
        right=b,
        score=0.97,
        rule="default",
        explanation=[
            {"comparison": "name", "fields": ["full_name"], "level": "sound_alike", "weight": 2.1},
            {"comparison": "mobile", "fields": ["mobile"], "level": "exact", "weight": 9.0},
        ],
    )
    second = MatchCandidate.objects.create(
        left=c,
        right=d,
        score=0.85,
        rule="default",
        explanation=[
            {"comparison": "name", "fields": ["full_name"], "level": "different", "weight": -5.0},
        ],
    )
    _login(page, live_server, steward.username)
    page.click("nav.mainnav >> text=Review queue")
    page.wait_for_selector(f"#candidate-{first.pk}")
    table = page.inner_text(f"#candidate-{first.pk} table")
    assert "章伟" in table and "sound_alike" in table and "+8613800000001" in table
    page.click(f"#decide-{first.pk} button.primary")
    page.wait_for_selector(f"#decide-{first.pk}.decided")
    page.click(f"#decide-{second.pk} button:not(.primary)")
    page.wait_for_selector(f"#decide-{second.pk}.decided")
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == CandidateStatus.APPROVED
    assert second.status == CandidateStatus.REJECTED


def test_sales_cannot_open_the_queue(page, live_server, sales):
    _login(page, live_server, sales.username)
    response = page.goto(f"{live_server.url}/dedup/review/")
    assert response.status == 403
