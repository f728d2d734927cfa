from __future__ import annotations

from unittest import mock

import pytest


@pytest.fixture(autouse=True)
def _no_real_retries():  # noqa: ANN202
    """A failed sync schedules its retry with connector_sync_task.apply_async; in tests that
    would leave messages in the broker for a later test's worker. The tests that check the
    retry assert on this mock."""
    with mock.patch("imports.tasks.connector_sync_task.apply_async") as retry:
        yield retry


from tests.imports.connectors.erp import mariadb_erp, pg_erp  # noqa: E402, F401 - fixtures of this folder
