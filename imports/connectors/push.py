"""Inbound pushes (the push API and the signed webhook): records sent by other systems go
through the same pipeline as a file import (cleaning, mapping, upsert, history, outbox,
error report, rollback), recorded as an ImportRun of kind push, one per request.

A record is a JSON object. Its source key is its ``source_key`` field, else its ``id``.
Its other fields are data-dictionary names, or columns of the source's mapping template;
anything else is kept in the raw record. The answer reports each record: created,
updated, unchanged (all stored; ``flags`` lists values stored but flagged) or rejected
(not stored, ``errors`` says why).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.crypto import seal_values, secret_field_names
from crmhub.choices import ChangeChannel
from crmhub.context import change_context
from crmhub.models import FieldDefinition, Source
from imports.choices import IssueKind, RunKind, RunStatus
from imports.connectors.base import cell_text
from imports.models import ImportRun, ImportRunIssue, MappingTemplate, PushRequest, SourceWebhook, WebhookDelivery
from imports.pipeline import ImportPipeline, Issue
from imports.writers import PreparedRow

KEY_FIELDS = ("source_key", "id")


class PushRefused(ValueError):
    """The request as a whole is refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class PushResult:
    status: int
    body: dict[str, Any]
    replayed: bool = False


def request_hash(payload: Any) -> str:
    return hashlib.sha256(
        json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str).encode()
    ).hexdigest()


def records_of(payload: Any) -> list[Any]:
    """The list of records in a request body (one object or a list), within the batch limit."""
    records = payload if isinstance(payload, list) else [payload]
    if isinstance(payload, dict) and isinstance(payload.get("records"), list):
        records = payload["records"]
    if not records:
        raise PushRefused(_("The request holds no records."))
    limit = settings.CRMHUB_PUSH_MAX_BATCH
    if len(records) > limit:
        raise PushRefused(
            _("The request holds %(n)s records; at most %(limit)s are accepted per request.")
            % {"n": len(records), "limit": limit},
            status=413,
        )
    return records


class PushPipeline(ImportPipeline):
    """The import pipeline over one request's records, telling what happened to each."""

    def __init__(self, run: ImportRun, keys: list[str], numbers: list[int]) -> None:
        super().__init__(run)
        self.push_keys = keys
        self.numbers = numbers  # row number (1-based position in the request) of each frame row
        self.outcomes: dict[int, str] = {}
        self.all_issues: list[Issue] = []

    def _keys(self, frame: pd.DataFrame) -> list[str]:
        return self.push_keys

    def prepare(self, frame: pd.DataFrame, first_row: int) -> tuple[list[PreparedRow], list[Issue]]:
        rows, issues = super().prepare(frame, 1)
        for item in [*rows, *issues]:
            item.row_number = self.numbers[item.row_number - 1]
        return rows, issues

    def process(self, rows: list[PreparedRow], issues: list[Issue]) -> None:
        # The pipeline looks up the existing records of the chunk's keys once (under the
        # source lock); that answer tells each record's outcome, without a second query.
        looked_up: dict[str, Any] = {}
        lookup = self.writer.existing

        def existing(source_id: int, keys: list[str]) -> dict[str, Any]:
            looked_up.update(lookup(source_id, keys))
            return looked_up

        self.writer.existing = existing  # type: ignore[method-assign]
        try:
            super().process(rows, issues)
        finally:
            self.writer.existing = lookup  # type: ignore[method-assign]
        for row in rows:
            found = looked_up.get(row.key)
            self.outcomes[row.row_number] = (
                "created" if found is None else "unchanged" if found.record_hash == row.record_hash else "updated"
            )
        self.all_issues = issues


def _mapping(source: Source, columns: list[str]) -> dict[str, str]:
    fields = set(FieldDefinition.objects.filter(is_active=True).values_list("name", flat=True))
    template = MappingTemplate.objects.filter(source=source).order_by("-updated_at", "-id").first()
    through = dict(template.mapping) if template is not None else {}
    mapping: dict[str, str] = {}
    taken: set[str] = set()
    for column in columns:
        if column in KEY_FIELDS:
            continue
        name = column if column in fields else through.get(column)
        if name and name not in taken:
            mapping[column] = name
            taken.add(name)
    return mapping


def _process(*, source: Source, user, records: list[Any], channel_ref: str) -> tuple[int, dict[str, Any], ImportRun]:  # noqa: ANN001
    results: list[dict[str, Any]] = [{} for _r in records]
    accepted: list[tuple[int, dict[str, str], str]] = []
    rejected: list[tuple[int, dict[str, str], str, dict[str, str]]] = []
    first_at: dict[str, int] = {}
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            errors = {"": _("a record must be a JSON object")}
            results[index] = {"index": index, "status": "rejected", "errors": errors}
            rejected.append((index, {}, "", errors))
            continue
        key = record.get("source_key")
        if key in (None, ""):
            key = record.get("id")
        errors = {}
        if key in (None, "") or isinstance(key, (dict, list, bool)):
            errors[""] = _("the record has no source_key (or id)")
        for name, value in record.items():
            if isinstance(value, dict):
                errors[str(name)] = _("nested objects are not accepted; send a flat value")
        key_text = cell_text(key).strip() if not errors.get("") else ""
        if key_text and key_text in first_at:
            errors[""] = _("the key appears again in this request; its first record is %(n)s") % {
                "n": first_at[key_text]
            }
        elif key_text:
            first_at[key_text] = index
        cells = {str(k): cell_text(v) for k, v in record.items() if not isinstance(v, dict)}
        if errors:
            results[index] = {"index": index, "source_key": key_text, "status": "rejected", "errors": errors}
            rejected.append((index, cells, key_text, errors))
            continue
        accepted.append((index, cells, key_text))
    run = ImportRun(
        source=source,
        kind=RunKind.PUSH,
        status=RunStatus.RUNNING,
        started_at=timezone.now(),
        created_by=user if getattr(user, "is_authenticated", False) else None,
        original_filename=channel_ref[:255],
        rows_total=len(records),
        options={"mapping": {}, "key_columns": ["source_key"], "dayfirst": False},
    )
    columns = list(dict.fromkeys(c for _i, cells, _k in accepted for c in cells))
    run.options["mapping"] = _mapping(source, columns)
    run.save()
    if rejected:
        secret_columns = {c for c, f in run.options["mapping"].items() if f in secret_field_names()}
        ImportRunIssue.objects.bulk_create(
            [
                ImportRunIssue(
                    run=run,
                    row_number=index + 1,
                    kind=IssueKind.ERROR,
                    source_key=key[:255],
                    raw=seal_values(cells, secret_columns),
                    reasons=errors,
                )
                for index, cells, key, errors in rejected
            ]
        )
    if accepted:
        frame = pd.DataFrame(
            [[cells.get(c, "") for c in columns] for _i, cells, _k in accepted], columns=columns, dtype=object
        )
        pipeline = PushPipeline(run, [k for _i, _c, k in accepted], [i + 1 for i, _c, _k in accepted])
        with change_context(channel=ChangeChannel.API, ref=f"import_run:{run.pk}", user=run.created_by):
            rows, issues = pipeline.prepare(frame, 1)
            pipeline.process(rows, issues)
            from imports.services import import_run_golden_recompute

            import_run_golden_recompute(run=run)
        tally = pipeline.tally
        by_row: dict[int, dict[str, Any]] = {}
        for issue in pipeline.all_issues:
            entry = by_row.setdefault(issue.row_number, {})
            entry["errors" if issue.kind == IssueKind.ERROR else "flags"] = issue.reasons
        for index, _cells, key in accepted:
            position = index + 1
            entry = by_row.get(position, {})
            if "errors" in entry:
                results[index] = {"index": index, "source_key": key, "status": "rejected", "errors": entry["errors"]}
            else:
                results[index] = {
                    "index": index,
                    "source_key": key,
                    "status": pipeline.outcomes.get(position, "rejected"),
                }
                if "flags" in entry:
                    results[index]["flags"] = entry["flags"]
        rejected_early = len(records) - len(accepted)
        counts = {
            "created": tally.created,
            "updated": tally.updated,
            "unchanged": tally.unchanged,
            "invalid": tally.invalid,
            "errors": tally.errors + rejected_early,
        }
    else:
        counts = {"created": 0, "updated": 0, "unchanged": 0, "invalid": 0, "errors": len(records)}
    ImportRun.objects.filter(pk=run.pk).update(
        status=RunStatus.COMPLETED, finished_at=timezone.now(), rows_done=len(records), **counts
    )
    stored = len(records) - counts["errors"]
    status = 200 if counts["errors"] == 0 else (207 if stored else 422)
    body = {"run": run.pk, "received": len(records), **counts, "records": results}
    return status, body, run


def push_records(*, source: Source, user, payload: Any, idempotency_key: str = "") -> PushResult:  # noqa: ANN001
    """Store one request's records; with an Idempotency-Key a repeat gets the first answer
    (nothing written twice) and the same key with another body is refused (422)."""
    records = records_of(payload)
    digest = request_hash(payload)
    key = idempotency_key.strip()[:200]
    if key:
        replay = _replay(source=source, user=user, key=key, digest=digest)
        if replay is not None:
            return replay
    try:
        with transaction.atomic():
            marker = None
            if key:
                marker = PushRequest.objects.create(
                    source=source, client=user, key=key, request_hash=digest, response_status=0
                )
            status, body, run = _process(source=source, user=user, records=records, channel_ref="push")
            if marker is not None:
                PushRequest.objects.filter(pk=marker.pk).update(response_status=status, response=body, run=run)
    except IntegrityError:
        replay = _replay(source=source, user=user, key=key, digest=digest) if key else None
        if replay is None:
            raise
        return replay
    return PushResult(status, body)


def _replay(*, source: Source, user, key: str, digest: str) -> PushResult | None:  # noqa: ANN001
    earlier = PushRequest.objects.filter(client=user, source=source, key=key).first()
    if earlier is None:
        return None
    if earlier.request_hash != digest:
        raise PushRefused(_("This Idempotency-Key was used for a different request body; use a new key."), status=422)
    return PushResult(earlier.response_status, earlier.response, replayed=True)


#
# Webhooks
#


SIGNATURE_HEADER = "X-Crmhub-Signature"
TIMESTAMP_HEADER = "X-Crmhub-Timestamp"


def webhook_sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=`` and the hex HMAC-SHA256 of ``timestamp.body`` under the source's secret."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


@transaction.atomic
def source_webhook_rotate(*, source: Source) -> str:
    """A new webhook secret for ``source`` (returned once; stored encrypted)."""
    secret = secrets.token_urlsafe(32)
    SourceWebhook.objects.update_or_create(source=source, defaults={"secret": secret, "is_active": True})
    return secret


def webhook_receive(*, source: Source, body: bytes, signature: str, timestamp: str, payload: Any) -> PushResult:
    """Verify the signature and the timestamp, refuse a replay, then store as a push does."""
    hook = SourceWebhook.objects.filter(source=source, is_active=True).first()
    if hook is None:
        raise PushRefused(_("This source does not accept webhooks."), status=404)
    try:
        sent_at = int(timestamp)
    except (TypeError, ValueError):
        raise PushRefused(
            _("The %(h)s header must hold the Unix time the request was signed at.") % {"h": TIMESTAMP_HEADER},
            status=401,
        ) from None
    if abs(time.time() - sent_at) > settings.CRMHUB_WEBHOOK_TOLERANCE_SECONDS:
        raise PushRefused(
            _("The request was signed too long ago (or in the future); sign it when sending."), status=401
        )
    expected = webhook_sign(hook.secret, timestamp, body)
    if not signature or not hmac.compare_digest(expected, signature.strip()):
        raise PushRefused(_("The signature does not match the body and timestamp."), status=401)
    records = records_of(payload)
    try:
        with transaction.atomic():
            delivery = WebhookDelivery.objects.create(source=source, signature=expected[7:])
            status, body_out, run = _process(source=source, user=None, records=records, channel_ref="webhook")
            WebhookDelivery.objects.filter(pk=delivery.pk).update(run=run)
    except IntegrityError:
        raise PushRefused(_("This delivery was received already."), status=409) from None
    return PushResult(status, body_out)
