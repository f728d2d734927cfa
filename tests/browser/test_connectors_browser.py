from __future__ import annotations

import pytest

from imports.connectors.services import connector_create
from tests.browser.conftest import login
from tests.factories import SourceFactory
from tests.imports.connectors.erp import erp_rows, mariadb_tables

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def erp():  # noqa: ANN201
    tables = mariadb_tables()
    yield tables
    tables.drop()


def test_it_tests_a_connection_in_place_and_shows_the_connector_on_the_monitoring_page(page, live_server, steward, erp):
    erp.insert(erp_rows(7))
    connector = connector_create(
        source=SourceFactory(code="erp"),
        name="ERP 客户",
        kind="sql",
        secret=erp.url,
        config={"table": erp.table, "key_columns": ["code"], "cursor_column": "updated_at"},
        mapping={"name": "full_name", "mobile": "mobile"},
    )
    login(page, live_server, steward.username, "pw-sam_steward")
    page.click("nav.mainnav a[href='/imports/connectors/']")
    page.wait_for_url(f"{live_server.url}/imports/connectors/")
    assert "ERP 客户" in page.locator("#connector-table").inner_text()
    page.click("#connector-table a:has-text('ERP 客户')")
    page.wait_for_url(f"{live_server.url}{connector.get_absolute_url()}")
    page.click(f"a[href='/imports/connectors/{connector.pk}/test/']")
    table = page.locator("#connection-test table")
    table.wait_for()
    assert page.url == f"{live_server.url}{connector.get_absolute_url()}"  # swapped in place by htmx
    assert table.locator("tbody tr").count() == 5
    assert "E000001" in table.inner_text()
