from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from django.conf import settings as django_settings

from crmhub.models import SourceRecord
from imports.choices import ChangeAction, RunStatus
from imports.connectors.services import connector_create, connector_run_execute, connector_sync_request
from imports.models import Connector, ImportRun, ImportRunChange
from imports.tasks import connector_run_task
from tests.conftest import ROOT, _worker_env
from tests.factories import SourceFactory
from tests.imports.connectors.erp import erp_rows

ROWS = 6000


@pytest.fixture
def doomed_worker(transactional_db):  # noqa: ANN001, ANN201
    """A Celery worker of this test's own, on a queue of its own, to be SIGKILLed (the
    session's shared worker must survive for the other tests)."""
    queue = f"{django_settings.CELERY_TASK_DEFAULT_QUEUE}-kill-{os.getpid()}"
    celery = [sys.executable, "-m", "celery", "-A", "crmhub"]
    log = open(os.path.join(django_settings.VAR_DIR, "kill-worker.log"), "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [
            *celery,
            "worker",
            "-l",
            "info",
            "-Q",
            queue,
            "--concurrency",
            "1",
            "-n",
            f"kill-worker-{os.getpid()}@%h",
            "--without-mingle",
            "--without-gossip",
        ],
        env=_worker_env(),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    process.queue = queue  # type: ignore[attr-defined]
    yield process
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    log.close()
    # the killed task's message was never acknowledged: drop it with the queue
    subprocess.run([*celery, "purge", "-f", "-Q", queue], env=_worker_env(), cwd=ROOT, capture_output=True, timeout=60)


@pytest.mark.integration
def test_it_resumes_without_loss_or_duplicates_after_the_worker_is_killed_mid_sync(
    doomed_worker, mariadb_erp, settings
):
    mariadb_erp.insert(erp_rows(ROWS))
    connector = connector_create(
        source=SourceFactory(code="erp"),
        name="erp",
        kind="sql",
        secret=mariadb_erp.url,
        config={"table": mariadb_erp.table, "key_columns": ["code"], "cursor_column": "updated_at", "page_size": 50},
        mapping={"name": "full_name", "mobile": "mobile"},
    )
    run = connector_sync_request(connector=connector, enqueue=False)
    connector_run_task.apply_async((run.pk,), queue=doomed_worker.queue)
    deadline = time.monotonic() + 90
    while ImportRun.objects.get(pk=run.pk).rows_done < 500:
        assert doomed_worker.poll() is None, "the worker died on its own"
        assert time.monotonic() < deadline, "the sync did not start on the worker"
        time.sleep(0.05)
    os.killpg(doomed_worker.pid, signal.SIGKILL)  # the worker and its pool process, mid-page, no clean-up
    doomed_worker.wait()
    killed = ImportRun.objects.get(pk=run.pk)
    assert killed.status == RunStatus.RUNNING and 0 < killed.rows_done < ROWS
    written = SourceRecord.objects.count()
    connector.refresh_from_db()
    last_key = connector.cursor["after"][1]["v"]
    # what was written is exactly what the saved cursor says was read: the page being written when
    # the worker died was rolled back together with its cursor move
    assert written == int(last_key[1:]) and written % 50 == 0

    settings.CRMHUB_CONNECTOR_STALE_SECONDS = 0  # the killed run is recognised as abandoned
    resumed = connector_sync_request(connector=Connector.objects.get(pk=connector.pk), enqueue=False)
    assert ImportRun.objects.get(pk=run.pk).status == RunStatus.FAILED
    resumed = connector_run_execute(run_id=resumed.pk)
    assert resumed.status == RunStatus.COMPLETED and resumed.created == ROWS - written
    assert SourceRecord.objects.count() == ROWS
    assert len(set(SourceRecord.objects.values_list("source_key", flat=True))) == ROWS
    assert ImportRunChange.objects.filter(action=ChangeAction.CREATED).count() == ROWS
