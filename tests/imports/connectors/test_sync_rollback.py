"""Rolling a connector sync back moves the cursor back; an empty scheduled sync is cheap and
leaves only the connector's monitoring figures."""

from __future__ import annotations

import datetime as dt

import pytest

from crmhub.models import SourceRecord
from imports.choices import ChangeAction, RunStatus
from imports.connectors.services import connector_run_execute, connector_sync_request, connector_update
from imports.models import Connector, ImportRun, ImportRunChange, ImportRunIssue
from imports.services import ImportRefused, import_run_request_rollback, import_run_rollback
from tests.imports.connectors.erp import BASE, erp_rows
from tests.imports.connectors.test_sql import make_connector

pytestmark = pytest.mark.django_db


def sync(connector: Connector, **kwargs) -> ImportRun:  # noqa: ANN003
    run = connector_sync_request(connector=Connector.objects.get(pk=connector.pk), enqueue=False, **kwargs)
    return connector_run_execute(run_id=run.pk)


def assert_no_loss_or_duplicate(n: int) -> None:
    """Every key once, each created by exactly one run that still stands."""
    assert SourceRecord.objects.count() == len(set(SourceRecord.objects.values_list("source_key", flat=True))) == n
    standing = ImportRunChange.objects.filter(action=ChangeAction.CREATED, run__rolled_back_at__isnull=True)
    assert standing.count() == n


def cursor_of(connector: Connector):  # noqa: ANN201
    return Connector.objects.get(pk=connector.pk).cursor


def test_rolling_back_a_sync_has_the_next_sync_read_its_rows_again(pg_erp):
    pg_erp.insert(erp_rows(10))
    connector = make_connector(pg_erp, page_size=4)
    first = sync(connector)
    after_first = cursor_of(connector)
    pg_erp.insert(erp_rows(3, start=11, at=BASE + dt.timedelta(days=1)))
    second = sync(connector)
    assert (first.created, second.created) == (10, 3)
    assert ImportRun.objects.get(pk=first.pk).log[0]["matching"] == "real time"  # matched after the sync

    import_run_rollback(run_id=second.pk)
    assert SourceRecord.objects.count() == 10
    assert cursor_of(connector) == second.options["cursor_before"] == after_first
    again = sync(connector)
    assert (again.rows_done, again.created) == (3, 3)
    assert_no_loss_or_duplicate(13)

    # The first sync too (the third did not touch its records): back to the start; its rows
    # are created again, the later ones come out unchanged.
    import_run_rollback(run_id=first.pk)
    assert cursor_of(connector) is None and SourceRecord.objects.count() == 3
    last = sync(connector)
    assert (last.rows_done, last.created, last.unchanged) == (13, 10, 3)
    assert_no_loss_or_duplicate(13)


def test_after_a_start_over_a_rollback_clears_the_cursor(pg_erp):
    pg_erp.insert(erp_rows(6))
    connector = make_connector(pg_erp)
    first = sync(connector)
    connector_update(connector=Connector.objects.get(pk=connector.pk), reset_cursor=True)
    reread = sync(connector)
    assert (reread.unchanged, cursor_of(connector) is not None) == (6, True)
    # Positions saved before the start-over mean nothing now: read everything again.
    import_run_rollback(run_id=first.pk)
    assert cursor_of(connector) is None and not SourceRecord.objects.exists()
    assert sync(connector).created == 6
    assert_no_loss_or_duplicate(6)


def test_a_sync_cannot_be_rolled_back_while_its_connector_syncs(pg_erp):
    pg_erp.insert(erp_rows(3))
    connector = make_connector(pg_erp)
    first = sync(connector)
    queued = connector_sync_request(connector=Connector.objects.get(pk=connector.pk), enqueue=False)
    with pytest.raises(ImportRefused, match=f"Run #{queued.pk} of this connector is still"):
        import_run_request_rollback(run=first)
    connector_run_execute(run_id=queued.pk)
    assert import_run_request_rollback(run=first).options["rollback_requested"]


def test_an_empty_scheduled_sync_is_cheap_and_leaves_only_the_monitoring_figures(pg_erp, django_assert_max_num_queries):
    pg_erp.insert(erp_rows(5))
    connector = make_connector(pg_erp)
    first = sync(connector, scheduled=True)
    assert first.created == 5 and ImportRun.objects.filter(pk=first.pk).exists()  # it did something: kept
    before = Connector.objects.get(pk=connector.pk)

    run = connector_sync_request(connector=before, enqueue=False, scheduled=True)
    with django_assert_max_num_queries(15):  # 15th: the source's erased keys (crmhub.privacy)
        done = connector_run_execute(run_id=run.pk)
    assert (done.status, done.rows_done, done.message) == (RunStatus.COMPLETED, 0, "Nothing new since the last sync.")
    assert not ImportRun.objects.filter(pk=run.pk).exists()  # no empty run in the run list
    assert not ImportRunIssue.objects.filter(run_id=run.pk).exists()  # and no error report
    after = Connector.objects.get(pk=connector.pk)
    assert after.last_rows == 0 and after.last_success_at > before.last_success_at
    assert after.last_run_id == first.pk and after.consecutive_failures == 0 and after.lag_seconds is not None

    # Asked for by a person ("Run now"), the empty sync stays as a run saying so.
    manual = connector_run_execute(run_id=connector_sync_request(connector=after, enqueue=False, user=None).pk)
    kept = ImportRun.objects.get(pk=manual.pk)
    assert (kept.rows_done, kept.message, kept.issues.count()) == (0, "Nothing new since the last sync.", 0)
