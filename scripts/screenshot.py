"""Take the README screenshot: the customer page as the demo support user sees it.

Usage: python scripts/screenshot.py http://127.0.0.1:8000 docs/screenshot.png  (with `make run` going)
"""

from __future__ import annotations

import sys

from playwright.sync_api import sync_playwright

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def main(base: str, out: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1360, "height": 860}, locale="zh-CN")
        page.goto(f"{base}/login/")
        page.fill("input[name=username]", "support")
        page.fill("input[name=password]", "crmhub-demo")
        page.click("#login-form button[type=submit]")
        page.wait_for_url(f"{base}/")
        # A multi-channel customer: search a VIP's name, open the first hit.
        page.goto(f"{base}/customers/?q=" + (sys.argv[3] if len(sys.argv) > 3 else "李明平"))
        page.locator("#customer-table tbody tr a").first.click()
        page.wait_for_load_state()
        page.screenshot(path=out, full_page=False)
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
