from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from crmhub.models import SourceRecord
from imports.choices import ChangeAction, RunStatus
from imports.connectors.services import connector_create, connector_run_execute, connector_sync_request
from imports.models import Connector, ImportRun, ImportRunChange
from tests.factories import SourceFactory
from tests.imports.connectors.erp import erp_rows, mariadb_erp  # noqa: F401

ROWS = 6000


@pytest.mark.integration
def test_it_resumes_without_loss_or_duplicates_after_the_worker_is_killed_mid_sync(live_worker, mariadb_erp, settings,
                                                                                  django_capture_on_commit_callbacks):
    mariadb_erp.insert(erp_rows(ROWS))
    connector = connector_create(
        source=SourceFactory(code="erp"), name="erp", kind="sql", secret=mariadb_erp.url,
        config={"table": mariadb_erp.table, "key_columns": ["code"], "cursor_column": "updated_at", "page_size": 50},
        mapping={"name": "full_name", "mobile": "mobile"},
    )
    with django_capture_on_commit_callbacks(execute=True):
        run = connector_sync_request(connector=connector)
    deadline = time.monotonic() + 60
    while ImportRun.objects.get(pk=run.pk).rows_done < 500:
        assert time.monotonic() < deadline, "the sync did not start on the worker"
        time.sleep(0.05)
    pool = psutil.Process(live_worker.pid).children()
    for child in pool:  # the pool processes: SIGKILL, no chance to clean up
        os.kill(child.pid, signal.SIGKILL)
    time.sleep(1)
    killed = ImportRun.objects.get(pk=run.pk)
    assert killed.status == RunStatus.RUNNING and 0 < killed.rows_done < ROWS
    written = SourceRecord.objects.count()
    connector.refresh_from_db()
    last_key = connector.cursor["after"][1]["v"]
    # what was written is exactly what the saved cursor says was read
    assert written == int(last_key[1:]) and written % 50 == 0

    settings.CRMHUB_CONNECTOR_STALE_SECONDS = 0  # the killed run is recognised as abandoned
    resumed = connector_sync_request(connector=Connector.objects.get(pk=connector.pk), enqueue=False)
    assert ImportRun.objects.get(pk=run.pk).status == RunStatus.FAILED
    resumed = connector_run_execute(run_id=resumed.pk)
    assert resumed.status == RunStatus.COMPLETED and resumed.created == ROWS - written
    assert SourceRecord.objects.count() == ROWS
    assert len(set(SourceRecord.objects.values_list("source_key", flat=True))) == ROWS
    assert ImportRunChange.objects.filter(action=ChangeAction.CREATED).count() == ROWS
