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
from django.contrib.auth.models import AnonymousUser
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.crypto import seal_values
from crmhub.choices import ChangeChannel
from crmhub.context import change_context
from crmhub.models import Source
from crmhub.privacy import erased_keys
from imports.choices import IssueKind, RunKind, RunStatus
from imports.connectors.base import cell_text
from imports.models import ImportRun, ImportRunIssue, MappingTemplate, PushRequest, SourceWebhook, WebhookDelivery
from imports.pipeline import ImportPipeline, Issue
from imports.single import (
    Definitions,
    Outcome,
    SingleReplay,
    SingleRetry,
    SingleRun,
    definitions_for,
    definitions_stamp_sql,
    prepare_one,
    store_one,
)
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


@dataclass
class PushContext:
    """What one query tells about a push before anything is written: the source, whether the
    client may push to it (guardian object permission, and the token's own source limits), the
    answer stored for this Idempotency-Key, the dictionary and the source's mapping template."""

    source: Source
    permitted: bool
    defs: Definitions
    template_mapping: dict[str, str]
    replay: tuple[str, int, dict] | None = None  # (request hash, status, response)


def push_context(*, code: str, user, token=None, idempotency_key: str = "") -> PushContext | None:  # noqa: ANN001
    """One round trip instead of the usual five (source, two guardian queries, the token's
    sources, the idempotency row) plus the dictionary and template look-ups. Plain SQL: the
    same query through the ORM cost ~5 ms of CPU a push to build."""
    from django.contrib.contenttypes.models import ContentType

    from accounts.models import ApiToken

    ct = ContentType.objects.get_for_model(Source)  # cached per process by Django
    token_id = token.pk if isinstance(token, ApiToken) else None
    with connection.cursor() as cursor:
        cursor.execute(
            _context_sql(),
            [ct.pk, ct.pk, user.pk, ct.pk, ct.pk, user.pk, token_id, token_id, user.pk, idempotency_key or None, code],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    n = len(_SOURCE_COLUMNS)
    source = Source.from_db(connection.alias, [f.attname for f in _SOURCE_COLUMNS], row[:n])
    stamp, template, user_perm, group_perm, token_limited, token_this, replay_hash, replay_status, response = row[n:]
    # guardian's ObjectPermissionBackend, as user.has_perm("crmhub.push_to_source", source)
    # decides it: an active superuser may; otherwise a user or a group object permission.
    permitted = bool(user.is_active) and bool(user.is_superuser or user_perm or group_perm)
    # accounts.authentication.token_allows_source: a token limited to sources keeps to them.
    if token_limited and not token_this:
        permitted = False
    replay = None
    if idempotency_key and replay_hash is not None:
        replay = (replay_hash, replay_status, _json(response))
    return PushContext(
        source=source,
        permitted=permitted,
        defs=definitions_for(stamp),
        template_mapping=dict(_json(template) or {}),
        replay=replay,
    )


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, (str, bytes)) else value


_SOURCE_COLUMNS = Source._meta.concrete_fields
_context_sql_cache: dict[str, str] = {}


def _context_sql() -> str:
    vendor = connection.vendor
    if vendor not in _context_sql_cache:
        from django.contrib.auth import get_user_model
        from guardian.models import GroupObjectPermission, UserObjectPermission

        from accounts.models import ApiToken

        tokens = ApiToken._meta.get_field("sources")
        groups = get_user_model()._meta.get_field("groups")
        user_groups = groups.remote_field.through._meta.db_table
        token_sources = tokens.remote_field.through._meta.db_table
        perm = (
            "JOIN auth_permission p ON p.id = o.permission_id WHERE o.content_type_id = %s "
            "AND p.content_type_id = %s AND p.codename = 'push_to_source' AND o.object_pk = CAST(s.id AS varchar(255))"
        )
        columns = ", ".join(f"s.{f.column}" for f in _SOURCE_COLUMNS)
        _context_sql_cache[vendor] = (
            f"SELECT {columns}, ({definitions_stamp_sql()}), "
            f"(SELECT t.mapping FROM {MappingTemplate._meta.db_table} t WHERE t.source_id = s.id "
            "ORDER BY t.updated_at DESC, t.id DESC LIMIT 1), "
            f"EXISTS (SELECT 1 FROM {UserObjectPermission._meta.db_table} o {perm} AND o.user_id = %s), "
            f"EXISTS (SELECT 1 FROM {GroupObjectPermission._meta.db_table} o {perm} AND o.group_id IN "
            f"(SELECT ug.{groups.m2m_reverse_name()} FROM {user_groups} ug WHERE ug.{groups.m2m_column_name()} = %s)), "
            f"EXISTS (SELECT 1 FROM {token_sources} ts WHERE ts.{tokens.m2m_column_name()} = %s), "
            f"EXISTS (SELECT 1 FROM {token_sources} ts WHERE ts.{tokens.m2m_column_name()} = %s "
            f"AND ts.{tokens.m2m_reverse_name()} = s.id), "
            "r.request_hash, r.response_status, r.response "
            f"FROM {Source._meta.db_table} s LEFT JOIN {PushRequest._meta.db_table} r "
            "ON r.source_id = s.id AND r.client_id = %s AND r.key = %s "
            "WHERE s.code = %s"
        )
    return _context_sql_cache[vendor]


def _mapping(context: PushContext, columns: list[str]) -> dict[str, str]:
    fields = context.defs.active
    through = context.template_mapping
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


def _check_records(records: list[Any], *, source_id: int) -> tuple[list[dict[str, Any]], list, list]:
    """Each record's early verdict: accepted (index, cells, key) or rejected (with errors)."""
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
    # A key whose person was erased is refused: an old copy must not bring them back.
    erased = erased_keys(source_id, [k for _i, _c, k in accepted])
    if erased:
        reason = {"": _("this key belongs to a person whose data was erased at their request; not stored")}
        for index, cells, key_text in [a for a in accepted if a[2] in erased]:
            results[index] = {"index": index, "source_key": key_text, "status": "rejected", "errors": reason}
            rejected.append((index, cells, key_text, reason))
        accepted = [a for a in accepted if a[2] not in erased]
    return results, accepted, rejected


def _process(
    *,
    context: PushContext,
    user,
    records: list[Any],
    channel_ref: str,  # noqa: ANN001
) -> tuple[int, dict[str, Any], ImportRun]:
    source = context.source
    results, accepted, rejected = _check_records(records, source_id=source.pk)
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
    run.options["mapping"] = _mapping(context, columns)
    run.save()
    if rejected:
        secret_columns = {c for c, f in run.options["mapping"].items() if f in context.defs.secret}
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


def push_records(
    *,
    source: Source | None = None,
    user,  # noqa: ANN001
    payload: Any,
    idempotency_key: str = "",
    context: PushContext | None = None,
) -> PushResult:
    """Store one request's records; with an Idempotency-Key a repeat gets the first answer
    (nothing written twice) and the same key with another body is refused (422). ``context``
    (from ``push_context``) saves the look-ups; without it they are made here."""
    records = records_of(payload)
    digest = request_hash(payload)
    key = idempotency_key.strip()[:200]
    if context is None:
        context = push_context(code=source.code, user=user, idempotency_key=key)
    source = context.source
    if key and context.replay is not None:
        return _answer_replay(context.replay, digest)
    if len(records) == 1:
        result = _push_single(context=context, user=user, record=records[0], key=key, digest=digest)
        if result is not None:
            return result
    try:
        with transaction.atomic():
            marker = None
            if key:
                marker = PushRequest.objects.create(
                    source=source, client=user, key=key, request_hash=digest, response_status=0
                )
            status, body, run = _process(context=context, user=user, records=records, channel_ref="push")
            if marker is not None:
                PushRequest.objects.filter(pk=marker.pk).update(response_status=status, response=body, run=run)
    except IntegrityError:
        replay = _replay(source=source, user=user, key=key, digest=digest) if key else None
        if replay is None:
            raise
        return replay
    _match_batch(run, body)
    return PushResult(status, body)


def _match_batch(run: ImportRun, body: dict[str, Any]) -> None:
    """Real-time matching of a batch's new records, by a worker once the batch has committed
    (``import_run_match``, as a file import does after its chunks): matching is record by
    record, far slower than storing a batch, and must not hold the answer back."""
    if body.get("created"):
        from imports.tasks import import_run_match_task

        transaction.on_commit(lambda: import_run_match_task.delay(run.pk))


SINGLE_ATTEMPTS = 3


def _push_single(*, context: PushContext, user, record: Any, key: str, digest: str) -> PushResult | None:  # noqa: ANN001
    """A request of one well-formed record, through ``imports.single`` (few round trips, no
    per-source queue). None when the record is rejected early: the general path reports it."""
    _results, accepted, _rejected = _check_records([record], source_id=context.source.pk)
    if not accepted or len(accepted[0][2]) > 255:
        return None
    _index, cells, source_key = accepted[0]
    defs = context.defs
    mapping = _mapping(context, list(cells))
    prepared = prepare_one(key=source_key, cells=cells, mapping=mapping, defs=defs)
    run = SingleRun(
        source_id=context.source.pk,
        user_id=user.pk if getattr(user, "is_authenticated", False) else None,
        user=user if getattr(user, "is_authenticated", False) else None,
        channel=ChangeChannel.API,
        original_filename="push",
        options={"mapping": mapping, "key_columns": ["source_key"], "dayfirst": False},
        secret_headers={c for c, f in mapping.items() if f in defs.secret},
    )

    def body_of(run_id: int, outcome: Outcome) -> dict[str, Any]:
        entry: dict[str, Any] = {"index": 0, "source_key": source_key, "status": outcome.status}
        if outcome.flags:
            entry["flags"] = outcome.flags
        counts = {name: int(outcome.status == name) for name in ("created", "updated", "unchanged")}
        return {
            "run": run_id,
            "received": 1,
            **counts,
            "invalid": int(bool(outcome.flags)),
            "errors": 0,
            "records": [entry],
        }

    def marker(run_id: int, outcome: Outcome) -> PushRequest:
        return PushRequest(
            source_id=run.source_id,
            client_id=run.user_id,
            key=key,
            request_hash=digest,
            response_status=200,
            response=body_of(run_id, outcome),
            run_id=run_id,
        )

    header_of = {f: h for h, f in mapping.items()}
    for _attempt in range(SINGLE_ATTEMPTS):
        try:
            with transaction.atomic():
                run_row, outcome = store_one(
                    run=run, record=prepared, defs=defs, header_of=header_of, marker=marker if key else None
                )
                if outcome.status == "created":
                    _match_created(run_row, outcome, user=run.user)
                elif outcome.status == "updated" and outcome.customer_id:
                    _recompute_updated(run_row, outcome, user=run.user)
            return PushResult(200, body_of(run_row.pk, outcome))
        except SingleRetry:
            continue  # another request wrote this key meanwhile: classify again against it
        except (SingleReplay, IntegrityError):
            replay = _replay(source=context.source, user=user, key=key, digest=digest) if key else None
            if replay is None:
                raise
            return replay
    raise PushRefused(_("The record was changed by other requests meanwhile; send it again."), status=409)


def _match_created(run: ImportRun, outcome: Outcome, *, user) -> None:  # noqa: ANN001
    """Real-time matching of the new record, in the push's transaction (as a file import's
    ``import_run_match`` does for a small run, after its chunks)."""
    from dedup.services import records_match

    result = records_match(source_record_ids=[outcome.source_record_id], acting_user=user)
    if result["merged"] or result["for_review"]:
        summary = {"matching": "real time", **{k: result[k] for k in ("records", "merged", "for_review", "unmatched")}}
        ImportRun.objects.filter(pk=run.pk).update(log=[summary])


def _recompute_updated(run: ImportRun, outcome: Outcome, *, user) -> None:  # noqa: ANN001
    """The changed record may change its golden record (survivorship), in the push's
    transaction, as ``import_run_golden_recompute`` does after a batch."""
    from dedup.survivorship import golden_record_recompute

    with change_context(channel=ChangeChannel.API, ref=f"import_run:{run.pk}", user=user):
        golden_record_recompute([outcome.customer_id])


def _answer_replay(replay: tuple[str, int, dict], digest: str) -> PushResult:
    request_digest, status, response = replay
    if request_digest != digest:
        raise PushRefused(_("This Idempotency-Key was used for a different request body; use a new key."), status=422)
    return PushResult(status, response, replayed=True)


def _replay(*, source: Source, user, key: str, digest: str) -> PushResult | None:  # noqa: ANN001
    earlier = (
        PushRequest.objects.filter(client=user, source=source, key=key)
        .values_list("request_hash", "response_status", "response")
        .first()
    )
    return None if earlier is None else _answer_replay(earlier, digest)


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
            context = push_context(code=source.code, user=AnonymousUser())
            status, body_out, run = _process(context=context, user=None, records=records, channel_ref="webhook")
            WebhookDelivery.objects.filter(pk=delivery.pk).update(run=run)
    except IntegrityError:
        raise PushRefused(_("This delivery was received already."), status=409) from None
    _match_batch(run, body_out)
    return PushResult(status, body_out)
