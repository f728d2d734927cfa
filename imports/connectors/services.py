"""Write operations on connectors: create and edit, test the connection, request and execute
a sync (an ImportRun of kind connector through the import pipeline), schedules, pausing
after repeated failures, and the alert raised then."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.policy import _may_see_unmapped, policy_for
from accounts.roles import Role, user_roles
from crmhub.choices import ChangeChannel
from crmhub.context import change_context
from crmhub.models import FieldDefinition, Source
from imports.choices import RunKind, RunStatus
from imports.connectors.base import Connector as ConnectorKind
from imports.connectors.base import ConnectorChunkSource, ConnectorError, connector_class
from imports.constants import CHUNK_ROWS
from imports.models import Connector, ImportRun

logger = logging.getLogger(__name__)

MANAGER_ROLES = {Role.ADMIN, Role.STEWARD}
HIDDEN = "•••"
SCHEDULED_TASK = "imports.connector_sync"


class ConnectorRefused(ValueError):
    """The request cannot be carried out; the message says why and what to do."""


def user_may_manage_connectors(user) -> bool:  # noqa: ANN001
    return bool(user_roles(user) & MANAGER_ROLES)


def connector_kind(connector: Connector) -> ConnectorKind:
    """The connector's kind object, with its decrypted credentials and saved cursor."""
    try:
        return connector_class(connector.kind)(
            config=connector.config, secret=connector.secret, cursor=connector.cursor
        )
    except ConnectorError as exc:
        raise ConnectorRefused(str(exc)) from exc


def connector_masked_secret(connector: Connector) -> str:
    try:
        return connector_kind(connector).masked_secret()
    except ConnectorRefused:
        return "***"


#
# Creating and editing
#


def _validate_mapping(mapping: dict[str, str]) -> dict[str, str]:
    known = set(FieldDefinition.objects.filter(is_active=True).values_list("name", flat=True))
    clean = {str(k).strip(): str(v).strip() for k, v in (mapping or {}).items() if str(k).strip() and str(v).strip()}
    unknown = sorted(set(clean.values()) - known)
    if unknown:
        raise ConnectorRefused(_("%(fields)s is not a field of the data dictionary.") % {"fields": ", ".join(unknown)})
    seen: dict[str, str] = {}
    for column, name in clean.items():
        if name in seen:
            raise ConnectorRefused(
                _("Columns %(a)s and %(b)s are both mapped to %(field)s; map one of them only.")
                % {"a": seen[name], "b": column, "field": name}
            )
        seen[name] = column
    return clean


@transaction.atomic
def connector_create(
    *,
    source: Source,
    name: str,
    kind: str,
    config: dict[str, Any],
    secret: str,
    mapping: dict[str, str] | None = None,
    max_failures: int = 3,
    user=None,  # noqa: ANN001
) -> Connector:
    try:
        clean = connector_class(kind).clean_config(config, secret)
    except ConnectorError as exc:
        raise ConnectorRefused(str(exc)) from exc
    if Connector.objects.filter(name=name).exists():
        raise ConnectorRefused(_("A connector named %(name)s exists already.") % {"name": name})
    connector = Connector(
        source=source,
        name=name,
        kind=kind,
        config=clean,
        secret=secret,
        mapping=_validate_mapping(mapping or {}),
        max_failures=max_failures,
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )
    connector.full_clean()
    connector.save()
    return connector


@transaction.atomic
def connector_update(
    *,
    connector: Connector,
    config: dict[str, Any] | None = None,
    secret: str | None = None,
    mapping: dict[str, str] | None = None,
    max_failures: int | None = None,
    reset_cursor: bool = False,
) -> Connector:
    """Change settings; an empty ``secret`` keeps the stored credentials. Changing what is
    read (table, query, cursor or key columns) starts over from the beginning."""
    connector = Connector.objects.select_for_update().get(pk=connector.pk)
    new_secret = secret if secret else connector.secret
    if config is not None:
        try:
            clean = connector_class(connector.kind).clean_config({**connector.config, **config}, new_secret)
        except ConnectorError as exc:
            raise ConnectorRefused(str(exc)) from exc
        reading = ("table", "query", "cursor_column", "key_columns", "url", "records_path", "cursor_field")
        if any(clean.get(k) != connector.config.get(k) for k in reading):
            reset_cursor = True
        connector.config = clean
    connector.secret = new_secret
    if mapping is not None:
        connector.mapping = _validate_mapping(mapping)
    if max_failures is not None:
        connector.max_failures = max_failures
    if reset_cursor:
        connector.cursor = None
    connector.full_clean()
    connector.save()
    return connector


#
# Test connection
#


@dataclass
class ConnectionTest:
    ok: bool
    columns: list[str]
    rows: list[dict[str, Any]]
    mapping: dict[str, str]
    message: str = ""
    notes: list[str] | None = None


def connector_test(*, connector: Connector, user) -> ConnectionTest:  # noqa: ANN001
    """Columns and five sample rows, masked as ``user`` may see them: a column mapped to a
    dictionary field through the field policy, an unmapped one as confidential free text."""
    try:
        preview = connector_kind(connector).preview(5)
    except (ConnectorError, ConnectorRefused) as exc:
        return ConnectionTest(False, [], [], {}, str(exc))
    mapping = connector.mapping or suggested_mapping(preview.columns)
    policy = policy_for(user)
    unmapped_visible = _may_see_unmapped(policy)
    rows = []
    for row in preview.rows:
        shown: dict[str, Any] = {}
        for column in preview.columns:
            value = row.get(column, "")
            name = mapping.get(column)
            if name and name in policy.fields:
                shown[column] = policy.present(name, value) if policy(name) > 0 else HIDDEN
            else:
                shown[column] = value if unmapped_visible else HIDDEN
        rows.append(shown)
    return ConnectionTest(True, preview.columns, rows, mapping, notes=preview.notes)


def suggested_mapping(columns: list[str]) -> dict[str, str]:
    from imports.services import mapping_suggest

    return mapping_suggest(headers=columns).mapping


#
# Syncs
#


def _running_runs(connector: Connector):  # noqa: ANN202
    return ImportRun.objects.filter(
        kind=RunKind.CONNECTOR, options__connector=connector.pk, status__in=[RunStatus.PENDING, RunStatus.RUNNING]
    )


@transaction.atomic
def connector_sync_request(
    *,
    connector: Connector,
    user=None,  # noqa: ANN001
    enqueue: bool = True,
    scheduled: bool = False,
) -> ImportRun:
    """A pending run of kind connector; its task is enqueued on commit. A run of the same
    connector still pending or running is refused, unless it has been silent for longer than
    CRMHUB_CONNECTOR_STALE_SECONDS (its worker died): that one is marked failed."""
    connector = Connector.objects.select_for_update().get(pk=connector.pk)
    stale_before = timezone.now() - timedelta(seconds=settings.CRMHUB_CONNECTOR_STALE_SECONDS)
    for run in _running_runs(connector):
        last = run.started_at or run.created_at
        if last < stale_before and run.status == RunStatus.RUNNING:
            ImportRun.objects.filter(pk=run.pk).update(
                status=RunStatus.FAILED,
                finished_at=timezone.now(),
                message=_("The worker running this sync stopped; the next sync resumes after the last page written."),
            )
        else:
            raise ConnectorRefused(
                _("Run #%(id)s of this connector is still %(status)s.")
                % {"id": run.pk, "status": run.get_status_display()}
            )
    run = ImportRun(
        source=connector.source,
        kind=RunKind.CONNECTOR,
        original_filename=connector.name[:255],
        created_by=user if getattr(user, "is_authenticated", False) else None,
        options={
            "connector": connector.pk,
            "mapping": connector.mapping,
            "key_columns": list(connector.config.get("key_columns", [])),
            "dayfirst": False,
            "cursor_before": connector.cursor,
            "scheduled": scheduled,
        },
    )
    run.full_clean(exclude=["file"])
    run.save()
    if enqueue:
        from imports.tasks import connector_run_task

        transaction.on_commit(lambda: connector_run_task.delay(run.pk))
    return run


def connector_sync_scheduled(*, connector_id: int) -> ImportRun | None:
    """A scheduled (or retried) sync: skipped when the connector is paused or already syncing."""
    connector = Connector.objects.filter(pk=connector_id).first()
    if connector is None or not connector.is_enabled:
        return None
    try:
        return connector_sync_request(connector=connector, scheduled=True)
    except ConnectorRefused:
        return None


def connector_run_execute(*, run_id: int) -> ImportRun | None:
    """Claim a pending connector run and process it page by page; afterwards record the
    outcome on the connector (monitoring, retry with backoff, pause after N failures)."""
    from imports.pipeline import ImportPipeline
    from imports.services import _safe_reason

    claimed = ImportRun.objects.filter(pk=run_id, status=RunStatus.PENDING).update(
        status=RunStatus.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        return None
    run = ImportRun.objects.select_related("created_by").get(pk=run_id)
    connector = Connector.objects.get(pk=run.options["connector"])
    status, message, failed = RunStatus.FAILED, "", True
    try:
        kind = connector_kind(connector)
        mapping = dict(run.options.get("mapping") or {})
        if not mapping:
            mapping = suggested_mapping(kind.preview(1).columns)
            run.options = {**run.options, "mapping": mapping}
            ImportRun.objects.filter(pk=run.pk).update(options=run.options)
        with change_context(channel=ChangeChannel.CONNECTOR, ref=f"import_run:{run.pk}", user=run.created_by):
            pipeline = ImportPipeline(
                run,
                chunk_rows=int(kind.config.get("page_size") or CHUNK_ROWS),
                chunk_source=ConnectorChunkSource(connector.pk, kind),
            )
            finished = pipeline.execute()
            from imports.services import import_run_golden_recompute

            import_run_golden_recompute(run=run)
        failed = False
        if finished:
            status = RunStatus.COMPLETED
            if not pipeline.tally.rows:
                message = _("Nothing new since the last sync.")
        else:
            status, message = RunStatus.CANCELLED, _("Cancelled; the pages already written stay until rolled back.")
    except (ConnectorError, ConnectorRefused) as exc:
        message = _("The sync stopped: %(reason)s. Pages already written stay; the next sync resumes after them.") % {
            "reason": str(exc)
        }
    except Exception as exc:  # noqa: BLE001 - the run must end in a terminal status whatever happens
        logger.exception("connector run %s failed", run_id)
        message = _("The sync stopped: %(reason)s. Pages already written stay; the next sync resumes after them.") % {
            "reason": _safe_reason(exc)
        }
    ImportRun.objects.filter(pk=run_id).update(status=status, message=message, finished_at=timezone.now())
    run.refresh_from_db()
    if status == RunStatus.COMPLETED and run.created:
        _match_synced(run)
    empty = status == RunStatus.COMPLETED and run.rows_done == 0
    _record_outcome(
        connector_id=connector.pk, run=run, failed=failed, keep_run=not (empty and run.options.get("scheduled"))
    )
    return run


def _match_synced(run: ImportRun) -> None:
    """Real-time matching of the records a sync created, as after a file import (in the worker)."""
    from imports.services import import_run_match

    try:
        import_run_match(run=run)
    except Exception:  # noqa: BLE001 - the records are stored; matching can be run again by a dedup run
        logger.exception("matching the records of connector run %s failed", run.pk)


@transaction.atomic
def _record_outcome(*, connector_id: int, run: ImportRun, failed: bool, keep_run: bool = True) -> None:
    """Monitoring figures on the connector. A scheduled sync that found nothing new is recorded
    here only (last success, 0 rows, lag) and its empty run removed: a schedule of every few
    minutes would otherwise bury the syncs that changed something under hundreds of empty runs."""
    connector = Connector.objects.select_for_update().get(pk=connector_id)
    now = timezone.now()
    connector.last_rows = run.rows_done
    if keep_run:
        connector.last_run = run
    if not failed:
        connector.last_success_at = now
        connector.consecutive_failures = 0
        connector.save(update_fields=["last_run", "last_rows", "last_success_at", "consecutive_failures", "updated_at"])
        if not keep_run:
            # Nothing refers to an empty run (no changes, no issues, not the last run): one
            # statement instead of the ORM's cascade of look-ups.
            with connection.cursor() as cursor:
                cursor.execute(
                    f"DELETE FROM {ImportRun._meta.db_table} WHERE id = %s AND rows_done = 0",  # noqa: S608
                    [run.pk],
                )
        return
    connector.last_error_at = now
    connector.last_error = run.message
    connector.consecutive_failures += 1
    fields = ["last_run", "last_rows", "last_error_at", "last_error", "consecutive_failures", "updated_at"]
    if connector.consecutive_failures >= connector.max_failures:
        connector.is_enabled = False
        connector.paused_reason = _("Paused after %(n)s failed syncs in a row.") % {"n": connector.consecutive_failures}
        fields += ["is_enabled", "paused_reason"]
        if connector.schedule_id:
            from django_celery_beat.models import PeriodicTask

            PeriodicTask.objects.filter(pk=connector.schedule_id).update(enabled=False)
        transaction.on_commit(_evaluate_connector_alerts)
        logger.error("connector %s paused after %s failures", connector.pk, connector.consecutive_failures)
    else:
        delay = settings.CRMHUB_CONNECTOR_RETRY_SECONDS * 2 ** (connector.consecutive_failures - 1)
        from imports.tasks import connector_sync_task

        transaction.on_commit(lambda: connector_sync_task.apply_async((connector_id,), countdown=delay))
    connector.save(update_fields=fields)


def _evaluate_connector_alerts() -> None:
    """Open (or resolve) the "connector paused" alert at once, through the central alert rules."""
    from crmhub.alerts import alerts_evaluate
    from crmhub.choices import AlertKind

    alerts_evaluate(kind=AlertKind.CONNECTOR_PAUSED)


@transaction.atomic
def connector_set_enabled(*, connector: Connector, enabled: bool) -> Connector:
    """Pause or resume; resuming clears the failure count and resolves the open alerts."""
    connector = Connector.objects.select_for_update().get(pk=connector.pk)
    connector.is_enabled = enabled
    if enabled:
        connector.consecutive_failures = 0
        connector.paused_reason = ""
        transaction.on_commit(_evaluate_connector_alerts)
    connector.save(update_fields=["is_enabled", "consecutive_failures", "paused_reason", "updated_at"])
    if connector.schedule_id:
        from django_celery_beat.models import PeriodicTask

        PeriodicTask.objects.filter(pk=connector.schedule_id).update(enabled=enabled)
    return connector


@transaction.atomic
def connector_schedule_set(
    *,
    connector: Connector,
    every_minutes: int | None = None,
    cron: str = "",
    enabled: bool = True,
) -> Connector:
    """Sync every N minutes or on a cron expression ("*/15 * * * *"); neither removes the schedule."""
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    connector = Connector.objects.select_for_update().get(pk=connector.pk)
    old = connector.schedule
    if not every_minutes and not cron.strip():
        connector.schedule = None
        connector.save(update_fields=["schedule", "updated_at"])
        if old is not None:
            old.delete()
        return connector
    kwargs: dict[str, Any] = {"interval": None, "crontab": None}
    if every_minutes:
        if every_minutes < 1:
            raise ConnectorRefused(_("The interval must be at least one minute."))
        kwargs["interval"], _c = IntervalSchedule.objects.get_or_create(
            every=every_minutes, period=IntervalSchedule.MINUTES
        )
    else:
        parts = cron.split()
        if len(parts) != 5:
            raise ConnectorRefused(_("A cron expression has five fields: minute hour day-of-month month day-of-week."))
        from django.core.exceptions import ValidationError

        crontab = CrontabSchedule(
            minute=parts[0],
            hour=parts[1],
            day_of_month=parts[2],
            month_of_year=parts[3],
            day_of_week=parts[4],
            timezone=settings.TIME_ZONE,
        )
        try:
            crontab.full_clean()
        except ValidationError as exc:
            raise ConnectorRefused(
                _("The cron expression is not valid: %(e)s")
                % {"e": "; ".join(m for ms in exc.message_dict.values() for m in ms)}
            ) from exc
        existing = CrontabSchedule.objects.filter(
            minute=parts[0], hour=parts[1], day_of_month=parts[2], month_of_year=parts[3], day_of_week=parts[4]
        ).first()
        if existing is None:
            crontab.save()
        kwargs["crontab"] = existing or crontab
    task = old or PeriodicTask(name=f"crmhub connector {connector.pk}", task=SCHEDULED_TASK)
    task.args = json.dumps([connector.pk])
    task.enabled = enabled and connector.is_enabled
    task.interval, task.crontab = kwargs["interval"], kwargs["crontab"]
    task.save()
    connector.schedule = task
    connector.save(update_fields=["schedule", "updated_at"])
    return connector


def schedule_describe(connector: Connector) -> str:
    task = connector.schedule
    if task is None:
        return ""
    if task.interval_id:
        return _("every %(n)s minutes") % {"n": task.interval.every}
    if task.crontab_id:
        c = task.crontab
        return f"cron {c.minute} {c.hour} {c.day_of_month} {c.month_of_year} {c.day_of_week}"
    return ""


#
# Rolling a sync back
#


def connector_rollback_check(*, run: ImportRun) -> None:
    """A sync cannot be rolled back while its connector is syncing: the running sync would move
    the cursor on past the rows the rollback gives back to be read again."""
    connector_id = run.options.get("connector") if run.kind == RunKind.CONNECTOR else None
    if connector_id is None:
        return
    busy = (
        ImportRun.objects.filter(
            kind=RunKind.CONNECTOR,
            options__connector=connector_id,
            status__in=[RunStatus.PENDING, RunStatus.RUNNING],
        )
        .exclude(pk=run.pk)
        .first()
    )
    if busy is not None:
        raise ConnectorRefused(
            _("Run #%(id)s of this connector is still %(status)s; roll back once it has finished.")
            % {"id": busy.pk, "status": busy.get_status_display()}
        )


def connector_cursor_after_rollback(*, run: ImportRun) -> None:
    """After a sync is rolled back, the connector reads its rows again at the next sync.

    The cursor goes back to where that sync started (``cursor_before``, saved when it was
    requested). Later syncs' rows are read again too and come out unchanged (the upsert is by
    key), so nothing is lost or doubled. When the connector started over since (changed
    settings or "Start over"), positions saved before mean nothing any more: the cursor is
    cleared and the next sync reads everything. A connector already reading from the start is
    left alone. Runs inside the rollback's transaction."""
    connector_id = run.options.get("connector") if run.kind == RunKind.CONNECTOR else None
    if connector_id is None:
        return
    connector = Connector.objects.select_for_update().filter(pk=connector_id).first()
    if connector is None or connector.cursor is None:
        return
    restarted = any(
        later.get("cursor_before") is None
        for later in ImportRun.objects.filter(
            kind=RunKind.CONNECTOR, options__connector=connector_id, pk__gt=run.pk
        ).values_list("options", flat=True)
    )
    connector.cursor = None if restarted else run.options.get("cursor_before")
    connector.save(update_fields=["cursor", "updated_at"])
