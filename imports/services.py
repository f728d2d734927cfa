"""Write operations of the imports app: receiving files, mapping templates, creating,
executing, cancelling, committing and rolling back import runs."""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.roles import Role, user_roles
from crmhub.choices import ChangeChannel
from crmhub.context import change_context, current_change_context
from crmhub.models import Customer, FieldDefinition, Interaction, Source, SourceRecord
from imports.choices import ChangeAction, RunKind, RunStatus
from imports.history import history_objects
from imports.mapping import detect_key_columns, header_signature, suggest_mapping
from imports.models import ImportRun, ImportRunChange, MappingTemplate
from imports.readers import FileLayout, FileRefused, inspect_file

logger = logging.getLogger(__name__)

IMPORT_ROLES = {Role.ADMIN, Role.STEWARD, Role.API_CLIENT}
STAGING_DIR = "imports/staging"


class ImportRefused(ValueError):
    """The import cannot start; the message says why and what to do."""


def user_may_import(user) -> bool:  # noqa: ANN001
    return bool(user_roles(user) & IMPORT_ROLES)


#
# Files and mappings
#


def upload_stage(*, fileobj, filename: str) -> str:  # noqa: ANN001
    """Keep an uploaded file until its run is created; returns its storage name."""
    from django.conf import settings

    size = getattr(fileobj, "size", None)
    if size is not None and size > settings.CRMHUB_IMPORT_MAX_UPLOAD_BYTES:
        raise ImportRefused(
            _("The file is %(size)s MB; the limit is %(limit)s MB. Split it into smaller files.")
            % {"size": size // (1024 * 1024), "limit": settings.CRMHUB_IMPORT_MAX_UPLOAD_BYTES // (1024 * 1024)}
        )
    safe = os.path.basename(filename or "upload")[-100:] or "upload"
    return default_storage.save(f"{STAGING_DIR}/{uuid.uuid4().hex}/{safe}", File(fileobj))


def upload_discard(*, name: str) -> None:
    if name.startswith(STAGING_DIR + "/") and default_storage.exists(name):
        default_storage.delete(name)


def upload_inspect(*, name: str, filename: str, sheet: str | None = None, header_row: int | None = None) -> FileLayout:
    if not name.startswith(STAGING_DIR + "/") or ".." in name:
        raise ImportRefused(_("The uploaded file is no longer available; upload it again."))
    try:
        return inspect_file(default_storage.path(name), filename=filename, sheet=sheet, header_row=header_row)
    except FileRefused as exc:
        raise ImportRefused(str(exc)) from exc


@dataclass
class MappingPlan:
    mapping: dict[str, str]
    key_columns: list[str]
    dayfirst: bool = False
    template: MappingTemplate | None = None
    scores: dict[str, int] = field(default_factory=dict)


def mapping_suggest(*, headers: list[str]) -> MappingPlan:
    """The automatic mapping: dictionary fields by exact and fuzzy header match, key column detected."""
    suggestions = suggest_mapping(headers, FieldDefinition.objects.filter(is_active=True))
    return MappingPlan(
        mapping={s.header: s.field for s in suggestions if s.field},
        key_columns=detect_key_columns(headers),
        scores={s.header: s.score for s in suggestions if s.field},
    )


def mapping_template_matching(*, source: Source, headers: list[str]) -> MappingTemplate | None:
    """The source's template saved for files with these headers, if any (most recent first)."""
    return (
        MappingTemplate.objects.filter(source=source, header_signature=header_signature(headers))
        .order_by("-updated_at", "-id")
        .first()
    )


def mapping_validate(*, headers: list[str], mapping: dict[str, str], key_columns: list[str]) -> None:
    missing = [h for h in [*mapping, *key_columns] if h not in headers]
    if missing:
        raise ImportRefused(
            _("The file has no column %(columns)s; it has: %(headers)s.")
            % {"columns": ", ".join(missing), "headers": ", ".join(headers)}
        )
    known = set(FieldDefinition.objects.filter(is_active=True).values_list("name", flat=True))
    unknown = sorted(set(mapping.values()) - known)
    if unknown:
        raise ImportRefused(_("%(fields)s is not a field of the data dictionary.") % {"fields": ", ".join(unknown)})
    seen: dict[str, str] = {}
    for header, name in mapping.items():
        if name in seen:
            raise ImportRefused(
                _("Columns %(a)s and %(b)s are both mapped to %(field)s; map one of them only.")
                % {"a": seen[name], "b": header, "field": name}
            )
        seen[name] = header
    if not key_columns:
        raise ImportRefused(_("Choose the column that holds the source's key for each record (e.g. 客户编号 or CID)."))


@transaction.atomic
def mapping_template_save(
    *,
    source: Source,
    name: str,
    headers: list[str],
    mapping: dict[str, str],
    key_columns: list[str],
    dayfirst: bool = False,
    user=None,  # noqa: ANN001
) -> MappingTemplate:
    mapping_validate(headers=headers, mapping=mapping, key_columns=key_columns)
    template = MappingTemplate.objects.filter(source=source, name=name).first() or MappingTemplate(
        source=source, name=name
    )
    template.headers = headers
    template.header_signature = header_signature(headers)
    template.mapping = mapping
    template.key_columns = key_columns
    template.dayfirst = dayfirst
    if template.pk is None:
        template.created_by = user
    template.full_clean()
    template.save()
    return template


#
# Runs
#


@transaction.atomic
def import_run_create(
    *,
    source: Source,
    staged_name: str,
    filename: str,
    layout: FileLayout,
    plan: MappingPlan,
    user=None,  # noqa: ANN001
    dry_run: bool = False,
    enqueue: bool = True,
    preview_of: ImportRun | None = None,
) -> ImportRun:
    """A pending run for a staged (already inspected) file; its task is enqueued on commit."""
    mapping_validate(headers=layout.headers, mapping=plan.mapping, key_columns=plan.key_columns)
    run = ImportRun(
        source=source,
        kind=RunKind.FILE,
        dry_run=dry_run,
        original_filename=os.path.basename(filename)[:255],
        created_by=user if getattr(user, "is_authenticated", False) else None,
        template=plan.template,
        rows_total=layout.rows_estimate,
        preview_of=preview_of,
        options={
            "layout": layout.as_options(),
            "mapping": plan.mapping,
            "key_columns": plan.key_columns,
            "dayfirst": plan.dayfirst,
        },
    )
    run.file.name = staged_name
    run.full_clean(exclude=["file"])
    run.save()
    if enqueue:
        _enqueue_execute(run.pk)
    return run


def _enqueue_execute(run_id: int) -> None:
    from imports.tasks import import_run_task

    transaction.on_commit(lambda: import_run_task.delay(run_id))


def import_run_execute(*, run_id: int) -> ImportRun | None:
    """Claim a pending run and process it; records a terminal status even on an exception.
    Returns None when another worker already has it."""
    from imports.pipeline import ImportPipeline

    claimed = ImportRun.objects.filter(pk=run_id, status=RunStatus.PENDING).update(
        status=RunStatus.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        return None
    run = ImportRun.objects.select_related("created_by").get(pk=run_id)
    status, message = RunStatus.FAILED, ""
    try:
        with change_context(channel=ChangeChannel.IMPORT, ref=f"import_run:{run.pk}", user=run.created_by):
            finished = ImportPipeline(run).execute()
            if not run.dry_run:
                import_run_golden_recompute(run=run)
        if not finished:
            status, message = RunStatus.CANCELLED, _("Cancelled; the chunks already written stay until rolled back.")
        else:
            status = RunStatus.PREVIEWED if run.dry_run else RunStatus.COMPLETED
            if not run.dry_run:
                import_run_match(run=run)
    except FileRefused as exc:
        message = str(exc)
    except Exception as exc:  # noqa: BLE001 - the run must end in a terminal status whatever happens
        logger.exception("import run %s failed", run_id)
        message = _("The run stopped: %(reason)s. Chunks already written stay until the run is rolled back.") % {
            "reason": _safe_reason(exc)
        }
    ImportRun.objects.filter(pk=run_id).update(status=status, message=message, finished_at=timezone.now())
    run.refresh_from_db()
    return run


def import_run_golden_recompute(*, run: ImportRun) -> dict:
    """Re-choose the golden values of the customers whose linked source records this run
    updated (survivorship rules, steward overrides), attributed to the current change context
    (the run's channel and reference). Records the run created got their golden record when
    they were written; matching handles those. What happened is kept in the run's log."""
    from dedup.survivorship import golden_record_recompute

    updated = ImportRunChange.objects.filter(run=run, action=ChangeAction.UPDATED).values("source_record_id")
    customer_ids = list(
        SourceRecord.objects.filter(pk__in=updated, customer__isnull=False)
        .values_list("customer_id", flat=True)
        .distinct()
    )
    if not customer_ids:
        return {}
    started = time.monotonic()
    outcome = golden_record_recompute(customer_ids)
    log = ImportRun.objects.filter(pk=run.pk).values_list("log", flat=True).first() or []
    run.log = [*log, {"golden_records": "recomputed", **outcome, "seconds": round(time.monotonic() - started, 2)}]
    ImportRun.objects.filter(pk=run.pk).update(log=run.log)
    return outcome


def import_run_match(*, run: ImportRun) -> dict:
    """Match the records a committed run created against the existing customers.

    A run of up to CRMHUB_REALTIME_MATCH_MAX_RECORDS new records is matched record by record
    at once (real time: a sure match merges the new golden record into the existing one, a
    doubtful one waits for review). A larger run hands its source to a batch dedup run,
    which spreads over the workers. What happened is kept in the run's log.
    """
    from dedup.services import dedup_run_create, records_match
    from dedup.tasks import dedup_run_start

    created = list(
        ImportRunChange.objects.filter(run=run, action=ChangeAction.CREATED, source_record__isnull=False).values_list(
            "source_record_id", flat=True
        )
    )
    if not created:
        summary: dict = {"matching": "nothing new"}
    elif len(created) <= settings.CRMHUB_REALTIME_MATCH_MAX_RECORDS:
        outcome = records_match(source_record_ids=created, acting_user=run.created_by)
        summary = {"matching": "real time", **{k: outcome[k] for k in ("records", "merged", "for_review", "unmatched")}}
    else:
        with transaction.atomic():
            dedup_run = dedup_run_create(source_code=run.source.code, user=run.created_by)
            transaction.on_commit(lambda: dedup_run_start.delay(dedup_run.pk))
        summary = {"matching": "batch", "dedup_run": dedup_run.pk, "records": len(created)}
    ImportRun.objects.filter(pk=run.pk).update(log=[*run.log, summary])
    return summary


def _safe_reason(exc: Exception) -> str:
    """A reason without personal values: database errors give their primary message only
    (their detail lines quote the offending row)."""
    diag = getattr(getattr(exc, "__cause__", None), "diag", None) or getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None)
    if primary:
        return f"{type(exc).__name__}: {primary}"
    if isinstance(exc, (UnicodeDecodeError, OSError, MemoryError)):
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return type(exc).__name__


@transaction.atomic
def import_run_cancel(*, run: ImportRun, user=None) -> ImportRun:  # noqa: ANN001
    """A queued run is cancelled at once; a running one stops after its current chunk; a
    dry run waiting for its commit is cancelled (nothing was written)."""
    if ImportRun.objects.filter(pk=run.pk, status__in=[RunStatus.PENDING, RunStatus.PREVIEWED]).update(
        status=RunStatus.CANCELLED, finished_at=timezone.now(), cancel_requested=True
    ):
        pass
    elif not ImportRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(cancel_requested=True):
        raise ImportRefused(_("Run #%(id)s has already finished.") % {"id": run.pk})
    run.refresh_from_db()
    return run


@transaction.atomic
def import_run_commit_preview(*, run: ImportRun, user=None) -> ImportRun:  # noqa: ANN001
    """Commit a dry run: a new run over the same file and mapping (the preview stays as it was)."""
    preview = ImportRun.objects.select_for_update().get(pk=run.pk)
    if not preview.dry_run or preview.status != RunStatus.PREVIEWED:
        raise ImportRefused(_("Only a finished dry run can be committed."))
    if preview.commits.exists():
        raise ImportRefused(_("This dry run has already been committed."))
    layout = FileLayout.from_options(preview.options["layout"])
    plan = MappingPlan(
        mapping=preview.options["mapping"],
        key_columns=preview.options["key_columns"],
        dayfirst=preview.options.get("dayfirst", False),
        template=preview.template,
    )
    return import_run_create(
        source=preview.source,
        staged_name=preview.file.name,
        filename=preview.original_filename,
        layout=layout,
        plan=plan,
        user=user,
        dry_run=False,
        preview_of=preview,
    )


#
# Rollback
#


@transaction.atomic
def import_run_request_rollback(*, run: ImportRun, user=None) -> ImportRun:  # noqa: ANN001
    run = ImportRun.objects.select_for_update().get(pk=run.pk)
    if not run.can_rollback or run.options.get("rollback_requested"):
        raise ImportRefused(
            _("Run #%(id)s cannot be rolled back (status: %(status)s).")
            % {"id": run.pk, "status": run.get_status_display()}
        )
    _check_no_later_changes(run)
    _check_connector_idle(run)
    run.options = {
        **run.options,
        "rollback_requested": True,
        "rollback_user": getattr(user, "pk", None) if getattr(user, "is_authenticated", False) else None,
    }
    run.save(update_fields=["options"])
    from imports.tasks import import_run_rollback_task

    transaction.on_commit(lambda: import_run_rollback_task.delay(run.pk))
    return run


def _check_connector_idle(run: ImportRun) -> None:
    from imports.connectors.services import ConnectorRefused, connector_rollback_check

    try:
        connector_rollback_check(run=run)
    except ConnectorRefused as exc:
        raise ImportRefused(str(exc)) from exc


def _check_no_later_changes(run: ImportRun) -> None:
    later = (
        ImportRunChange.objects.filter(
            run__gt=run.pk,
            run__rolled_back_at__isnull=True,
            source_record_id__in=ImportRunChange.objects.filter(run=run).values("source_record_id"),
        )
        .values_list("run_id", flat=True)
        .order_by("-run_id")
        .first()
    )
    if later:
        raise ImportRefused(
            _("Run #%(later)s changed records of this run afterwards; roll it back first.") % {"later": later}
        )


def _delete_ids(model: type, ids: list[int]) -> None:
    table = model._meta.db_table
    with connection.cursor() as cursor:
        for i in range(0, len(ids), 500):
            batch = ids[i : i + 500]
            cursor.execute(f"DELETE FROM {table} WHERE id IN ({', '.join(['%s'] * len(batch))})", batch)


@transaction.atomic
def import_run_rollback(*, run_id: int, user=None) -> ImportRun:  # noqa: ANN001
    """Undo a committed run in one transaction: updated records get their values back,
    created records and the customers made for them go. History keeps both the run's
    changes and their undoing (reason 'rollback')."""
    run = ImportRun.objects.select_for_update().get(pk=run_id)
    if not run.can_rollback:
        raise ImportRefused(
            _("Run #%(id)s cannot be rolled back (status: %(status)s).")
            % {"id": run.pk, "status": run.get_status_display()}
        )
    _check_no_later_changes(run)
    reason = f"rollback of import run {run.pk}"
    now = timezone.now()
    kept_customers = 0
    with change_context(channel=ChangeChannel.IMPORT, ref=f"import_run:{run.pk}", user=user):
        ctx = current_change_context()
        updates = list(
            ImportRunChange.objects.filter(run=run, action=ChangeAction.UPDATED).values_list(
                "source_record_id", "before"
            )
        )
        for i in range(0, len(updates), 500):
            batch = dict(updates[i : i + 500])
            records = SourceRecord.objects.in_bulk([pk for pk in batch if pk])
            for pk, record in records.items():
                before = batch[pk]
                record.raw, record.normalized = before["raw"], before["normalized"]
                record.flags, record.record_hash, record.updated_at = before["flags"], before["record_hash"], now
            SourceRecord.objects.bulk_update(
                records.values(), ["raw", "normalized", "flags", "record_hash", "updated_at"]
            )
            SourceRecord.history.model.objects.bulk_create(
                history_objects(SourceRecord, records.values(), "~", ctx, now, reason)
            )
        created = list(
            ImportRunChange.objects.filter(run=run, action=ChangeAction.CREATED).values_list(
                "source_record_id", "customer_id"
            )
        )
        for i in range(0, len(created), 500):
            batch = created[i : i + 500]
            record_ids = [r for r, _c in batch if r]
            records = list(SourceRecord.objects.filter(pk__in=record_ids))
            SourceRecord.history.model.objects.bulk_create(
                history_objects(SourceRecord, records, "-", ctx, now, reason)
            )
            Interaction.objects.filter(source_record_id__in=record_ids).update(source_record=None)
            _delete_ids(SourceRecord, [r.pk for r in records])
            customer_ids = {c for _r, c in batch if c}
            if customer_ids:
                busy = set(
                    SourceRecord.objects.filter(customer_id__in=customer_ids).values_list("customer_id", flat=True)
                )
                busy |= set(
                    Interaction.objects.filter(customer_id__in=customer_ids).values_list("customer_id", flat=True)
                )
                busy |= set(
                    Customer.objects.filter(merged_into_id__in=customer_ids).values_list("merged_into_id", flat=True)
                )
                doomed = list(Customer.objects.filter(pk__in=customer_ids - busy))
                kept_customers += len(customer_ids) - len(doomed)
                Customer.history.model.objects.bulk_create(history_objects(Customer, doomed, "-", ctx, now, reason))
                _delete_ids(Customer, [c.pk for c in doomed])
    from imports.connectors.services import connector_cursor_after_rollback

    connector_cursor_after_rollback(run=run)  # a connector reads the rows again at its next sync
    run.status = RunStatus.ROLLED_BACK
    run.rolled_back_at = now
    run.rolled_back_by = user if getattr(user, "is_authenticated", False) else None
    entry = {
        "at": now.isoformat(),
        "event": "rolled_back",
        "restored": len(updates),
        "removed": len(created),
        "customers_kept": kept_customers,
    }
    run.log = [*run.log, entry]
    run.message = _("Rolled back: %(restored)s records restored, %(removed)s records removed.") % {
        "restored": len(updates),
        "removed": len(created),
    }
    if kept_customers:
        run.message += " " + _("%(n)s customers were kept because other records or interactions now refer to them.") % {
            "n": kept_customers
        }
    run.save(update_fields=["status", "rolled_back_at", "rolled_back_by", "log", "message"])
    return run


def import_run_rollback_execute(*, run_id: int) -> ImportRun | None:
    from django.contrib.auth import get_user_model

    run = ImportRun.objects.filter(pk=run_id).first()
    if run is None or run.status == RunStatus.ROLLED_BACK:
        return run
    user_id = run.options.get("rollback_user")
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    try:
        return import_run_rollback(run_id=run_id, user=user)
    except Exception as exc:  # noqa: BLE001 - recorded on the run, the rollback transaction undone
        logger.exception("rollback of import run %s failed", run_id)
        options = {**run.options, "rollback_requested": False}
        ImportRun.objects.filter(pk=run_id).update(
            options=options,
            message=_("The rollback failed and changed nothing: %(reason)s") % {"reason": _safe_reason(exc)},
        )
        return None


def file_run_from_path(
    *,
    path: str,
    source: Source,
    plan_for,
    user=None,
    dry_run: bool = False,
    enqueue: bool = True,  # noqa: ANN001
    sheet: str | None = None,
    header_row: int | None = None,
) -> ImportRun:
    """Stage a local file (the command line), inspect it, and create its run. ``plan_for(layout)``
    returns the MappingPlan."""
    try:
        layout = inspect_file(path, filename=path, sheet=sheet, header_row=header_row)
    except FileRefused as exc:
        raise ImportRefused(str(exc)) from exc
    plan = plan_for(layout)
    with open(path, "rb") as fh:
        staged = upload_stage(fileobj=fh, filename=os.path.basename(path))
    try:
        return import_run_create(
            source=source,
            staged_name=staged,
            filename=os.path.basename(path),
            layout=layout,
            plan=plan,
            user=user,
            dry_run=dry_run,
            enqueue=enqueue,
        )
    except Exception:
        upload_discard(name=staged)
        raise


def plan_resolve(
    *,
    source: Source,
    layout: FileLayout,
    template_name: str = "",
    auto_map: bool = False,
    key_columns: list[str] | None = None,
) -> MappingPlan:
    """The mapping for a file: the named template, else --auto-map's suggestion, else the
    source's template saved for these headers. ``key_columns`` override the template's."""
    plan: MappingPlan | None = None
    if template_name:
        template = MappingTemplate.objects.filter(source=source, name=template_name).first()
        if template is None:
            names = ", ".join(MappingTemplate.objects.filter(source=source).values_list("name", flat=True)) or "-"
            raise ImportRefused(
                _("Source %(source)s has no template %(name)s (it has: %(names)s).")
                % {"source": source.code, "name": template_name, "names": names}
            )
        plan = MappingPlan(dict(template.mapping), list(template.key_columns), template.dayfirst, template)
    elif auto_map:
        plan = mapping_suggest(headers=layout.headers)
    else:
        template = mapping_template_matching(source=source, headers=layout.headers)
        if template is None:
            raise ImportRefused(
                _(
                    "No mapping for these columns: pass --auto-map, or --template NAME of a template "
                    "saved for source %(source)s."
                )
                % {"source": source.code}
            )
        plan = MappingPlan(dict(template.mapping), list(template.key_columns), template.dayfirst, template)
    if key_columns:
        plan.key_columns = key_columns
    if not plan.key_columns:
        raise ImportRefused(
            _("Cannot tell which column holds the record key; pass --key COLUMN (columns: %(h)s).")
            % {"h": ", ".join(layout.headers)}
        )
    mapping_validate(headers=layout.headers, mapping=plan.mapping, key_columns=plan.key_columns)
    return plan


def run_status_values() -> dict[str, Any]:
    return {"terminal": sorted(RunStatus.terminal())}
