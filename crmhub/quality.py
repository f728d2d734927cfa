"""Data-quality metrics, computed set-based in SQL and kept as daily snapshots.

Each table is read once per kind of figure, by one aggregate statement that computes every
field's counts side by side (``SUM(CASE ...)`` per field), so the cost grows with the rows,
not with rows × fields. The statements are plain SQL with a small vendor switch for reading
JSON keys, so they run on SQLite and PostgreSQL alike.

What each metric means (``QualitySnapshot`` rows; ``source`` empty = across sources):

* ``records`` — source records per source; active golden records (no source).
* ``completeness`` — per source and field: share of the source's records whose normalized
  value is present. Only fields a source carries at all (a value or a flag on one record)
  get a row, so that a source which never maps "wechat_openid" is not reported 0 % complete.
  Without a source: share of active golden records with the value.
* ``validity`` — per source and field: share of present-or-flagged values not flagged by
  their cleaning rule (``SourceRecord.flags``; each field has the rule of its type).
  Without a source: the same over all sources.
* ``uniqueness`` / ``duplicate_rate`` — golden records (no source), per identity-key field:
  distinct values / filled values, and the share of filled golden records that share their
  value with another active golden record. Per source: the same among the source's own
  records (its internal duplicates; secret keys left out, being sealed).
* ``review_backlog`` — pending match candidates (no source, no field).
* ``freshness_hours`` — per source: hours since the later of its last successful import or
  sync (``imports.ImportRun``) and its records' ``last_seen_at``.
* ``conflict_rate`` — per field, across sources: among golden records with two or more
  source records holding a value, the share whose values differ. Secret fields are sealed
  with a randomised cipher in source records and cannot be compared in SQL: left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from crmhub.choices import CustomerStatus, QualityMetric, Sensitivity
from crmhub.models import Customer, FieldDefinition, QualitySnapshot, Source, SourceRecord

QUALITY_LOCK_KEY = 0x6372716D  # "crqm": one metrics run at a time per database
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")

# Golden-record columns that are not plain text (the rest compare with '').
_NULLABLE_COLUMNS = {"birth_date", "consent_marketing", "consent_sms", "consent_email"}
_JSON_COLUMNS = {"tags"}
# Identity keys compared through another column (the ID number is encrypted; its blind index is not).
_IDENTITY_COLUMN = {"id_number": "id_number_hash"}


@dataclass(frozen=True)
class Figure:
    source_id: int | None
    field: str
    metric: str
    value: float | None
    numerator: int | None = None
    denominator: int | None = None


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


#
# SQL building blocks
#


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _json_text(column: str, key: str) -> str:
    """The text of ``column``'s JSON key ``key`` (NULL when absent)."""
    if not _SAFE_NAME.match(key):
        raise ValueError(f"field name {key!r} cannot be used in a metric")
    if connection.vendor == "postgresql":
        return f"({column} ->> '{key}')"
    return f"json_extract({column}, '$.\"{key}\"')"


def _present(expr: str) -> str:
    return f"({expr} IS NOT NULL AND {expr} <> '' AND {expr} <> '[]')"


def _fetch_one(sql: str, params: Iterable[Any] = ()) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        return cursor.fetchone()


def _fetch_all(sql: str, params: Iterable[Any] = ()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        return cursor.fetchall()


def _as_datetime(value: Any) -> datetime | None:  # noqa: ANN401
    if value is None or isinstance(value, datetime):
        return value
    parsed = parse_datetime(str(value))
    if parsed is not None and timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


#
# The metrics
#


def _source_record_figures(fields: list[FieldDefinition], now: datetime) -> tuple[list[Figure], dict[int, datetime]]:
    """Completeness and validity per source and field, records per source, and each
    source's latest ``last_seen_at``: one pass over the source records."""
    table = _q(SourceRecord._meta.db_table)
    columns = ["source_id", "COUNT(*)", "MAX(last_seen_at)"]
    for f in fields:
        value, flag = _json_text("normalized", f.name), _json_text("flags", f.name)
        columns += [
            f"SUM(CASE WHEN {_present(value)} THEN 1 ELSE 0 END)",
            f"SUM(CASE WHEN {flag} IS NOT NULL THEN 1 ELSE 0 END)",
            f"SUM(CASE WHEN {_present(value)} OR {flag} IS NOT NULL THEN 1 ELSE 0 END)",
        ]
    rows = _fetch_all(f"SELECT {', '.join(columns)} FROM {table} GROUP BY source_id")  # noqa: S608
    figures: list[Figure] = []
    last_seen: dict[int, datetime] = {}
    totals: dict[str, list[int]] = {f.name: [0, 0] for f in fields}  # field -> [flagged, checked]
    for row in rows:
        source_id, count, seen = row[0], int(row[1]), _as_datetime(row[2])
        if seen is not None:
            last_seen[source_id] = seen
        figures.append(Figure(source_id, "", QualityMetric.RECORDS, float(count), count, None))
        for i, f in enumerate(fields):
            present, flagged, checked = (int(v or 0) for v in row[3 + 3 * i : 6 + 3 * i])
            if not checked:
                continue  # the source does not carry this field
            completeness = _ratio(present, count)
            figures.append(Figure(source_id, f.name, QualityMetric.COMPLETENESS, completeness, present, count))
            figures.append(
                Figure(
                    source_id,
                    f.name,
                    QualityMetric.VALIDITY,
                    _ratio(checked - flagged, checked),
                    checked - flagged,
                    checked,
                )
            )
            totals[f.name][0] += flagged
            totals[f.name][1] += checked
    for name, (flagged, checked) in totals.items():
        if checked:
            figures.append(
                Figure(
                    None, name, QualityMetric.VALIDITY, _ratio(checked - flagged, checked), checked - flagged, checked
                )
            )
    return figures, last_seen


def _golden_expr(f: FieldDefinition) -> str:
    """SQL that is true when an active golden record has a value for ``f``."""
    if f.name not in Customer.CORE_FIELDS:
        return _present(_json_text("custom", f.name))
    column = _q(f.name)
    if f.name in _NULLABLE_COLUMNS:
        return f"{column} IS NOT NULL"
    if f.name in _JSON_COLUMNS:
        text = f"{column}::text" if connection.vendor == "postgresql" else column
        return f"({column} IS NOT NULL AND {text} NOT IN ('[]', 'null', '\"\"', '{{}}'))"
    return f"({column} IS NOT NULL AND {column} <> '')"


def _golden_figures(fields: list[FieldDefinition]) -> list[Figure]:
    """Completeness of golden records per field: one pass over active customers."""
    table = _q(Customer._meta.db_table)
    columns = ["COUNT(*)"] + [f"SUM(CASE WHEN {_golden_expr(f)} THEN 1 ELSE 0 END)" for f in fields]
    row = _fetch_one(
        f"SELECT {', '.join(columns)} FROM {table} WHERE status = %s",  # noqa: S608
        [CustomerStatus.ACTIVE],
    )
    count = int(row[0])
    figures = [Figure(None, "", QualityMetric.RECORDS, float(count), count, None)]
    for f, present in zip(fields, row[1:], strict=True):
        present = int(present or 0)
        figures.append(Figure(None, f.name, QualityMetric.COMPLETENESS, _ratio(present, count), present, count))
    return figures


def _identity_figures(fields: list[FieldDefinition]) -> list[Figure]:
    """Uniqueness and duplicate rate of golden records per identity key (one grouped pass each)."""
    table = _q(Customer._meta.db_table)
    figures: list[Figure] = []
    for f in fields:
        if not f.is_identity_key:
            continue
        if f.name in Customer.CORE_FIELDS:
            expr = _q(_IDENTITY_COLUMN.get(f.name, f.name))
        else:
            expr = _json_text("custom", f.name)
        filled, distinct, shared = _fetch_one(
            f"""
            SELECT COALESCE(SUM(n), 0), COUNT(*), COALESCE(SUM(CASE WHEN n > 1 THEN n ELSE 0 END), 0)
            FROM (SELECT {expr} AS v, COUNT(*) AS n FROM {table}
                  WHERE status = %s AND {_present(expr)} GROUP BY {expr}) AS g
            """,  # noqa: S608 - names are validated identifiers
            [CustomerStatus.ACTIVE],
        )
        filled, distinct, shared = int(filled), int(distinct), int(shared)
        figures.append(Figure(None, f.name, QualityMetric.UNIQUENESS, _ratio(distinct, filled), distinct, filled))
        figures.append(Figure(None, f.name, QualityMetric.DUPLICATE_RATE, _ratio(shared, filled), shared, filled))
    return figures


def _source_identity_figures(fields: list[FieldDefinition]) -> list[Figure]:
    """Per source and identity key: uniqueness and duplicate rate of the normalized values
    among the source's own records (one grouped pass per key field). Secret keys are sealed
    with a randomised cipher in source records and cannot be grouped: left out."""
    table = _q(SourceRecord._meta.db_table)
    figures: list[Figure] = []
    for f in fields:
        if not f.is_identity_key or f.sensitivity == Sensitivity.SECRET:
            continue
        value = _json_text("normalized", f.name)
        rows = _fetch_all(
            f"""
            SELECT source_id, SUM(n), COUNT(*), SUM(CASE WHEN n > 1 THEN n ELSE 0 END)
            FROM (SELECT source_id, {value} AS v, COUNT(*) AS n FROM {table}
                  WHERE {_present(value)} GROUP BY source_id, {value}) AS g
            GROUP BY source_id
            """  # noqa: S608 - names are validated identifiers
        )
        for source_id, filled, distinct, shared in rows:
            filled, distinct, shared = int(filled), int(distinct), int(shared)
            figures.append(
                Figure(source_id, f.name, QualityMetric.UNIQUENESS, _ratio(distinct, filled), distinct, filled)
            )
            figures.append(
                Figure(source_id, f.name, QualityMetric.DUPLICATE_RATE, _ratio(shared, filled), shared, filled)
            )
    return figures


def _conflict_figures(fields: list[FieldDefinition]) -> list[Figure]:
    """Per field: golden records whose source records disagree, among those with two or more
    values. One grouped pass over the source records."""
    fields = [f for f in fields if f.sensitivity != Sensitivity.SECRET]
    if not fields:
        return []
    table = _q(SourceRecord._meta.db_table)
    inner, outer = ["customer_id"], []
    for i, f in enumerate(fields):
        value = _json_text("normalized", f.name)
        v = f"CASE WHEN {_present(value)} THEN {value} END"
        # "two or more distinct values" is MIN <> MAX: plain aggregates, no per-group sort
        # (COUNT(DISTINCT ...) for 25 fields made this pass 4x slower at 1M rows).
        inner += [f"COUNT({v}) AS n{i}", f"CASE WHEN MIN({v}) <> MAX({v}) THEN 1 ELSE 0 END AS d{i}"]
        outer += [f"COALESCE(SUM(CASE WHEN n{i} >= 2 THEN 1 ELSE 0 END), 0)", f"COALESCE(SUM(d{i}), 0)"]
    row = _fetch_one(
        f"SELECT {', '.join(outer)} FROM (SELECT {', '.join(inner)} FROM {table} "  # noqa: S608
        f"WHERE customer_id IS NOT NULL GROUP BY customer_id HAVING COUNT(*) >= 2) AS g"
    )
    figures = []
    for i, f in enumerate(fields):
        comparable, conflicting = int(row[2 * i]), int(row[2 * i + 1])
        if comparable:
            figures.append(
                Figure(
                    None, f.name, QualityMetric.CONFLICT_RATE, _ratio(conflicting, comparable), conflicting, comparable
                )
            )
    return figures


def _freshness_figures(last_seen: dict[int, datetime], now: datetime) -> list[Figure]:
    from django.db.models import Max

    from imports.choices import RunStatus
    from imports.models import ImportRun

    last_run = dict(
        ImportRun.objects.filter(status=RunStatus.COMPLETED, dry_run=False, finished_at__isnull=False)
        .values_list("source_id")
        .annotate(last=Max("finished_at"))
    )
    figures = []
    for source_id in Source.objects.filter(is_active=True).values_list("pk", flat=True):
        moments = [m for m in (last_run.get(source_id), last_seen.get(source_id)) if m is not None]
        hours = (now - max(moments)).total_seconds() / 3600 if moments else None
        figures.append(Figure(source_id, "", QualityMetric.FRESHNESS, hours))
    return figures


def _backlog_figures() -> list[Figure]:
    from dedup.choices import CandidateStatus
    from dedup.models import MatchCandidate

    pending = MatchCandidate.objects.filter(status=CandidateStatus.PENDING).count()
    return [Figure(None, "", QualityMetric.REVIEW_BACKLOG, float(pending), pending, None)]


def quality_figures(*, now: datetime | None = None) -> list[Figure]:
    """Every metric as of ``now``, without storing anything."""
    now = now or timezone.now()
    fields = list(FieldDefinition.objects.filter(is_active=True).order_by("sort_order", "name"))
    record_figures, last_seen = _source_record_figures(fields, now)
    return [
        *record_figures,
        *_golden_figures(fields),
        *_identity_figures(fields),
        *_source_identity_figures(fields),
        *_conflict_figures(fields),
        *_freshness_figures(last_seen, now),
        *_backlog_figures(),
    ]


def quality_snapshot_take(*, day: date | None = None, now: datetime | None = None) -> int:
    """Compute every metric and store it as ``day``'s snapshot, replacing any rows of that
    day (so re-running is idempotent). Returns the number of rows stored."""
    now = now or timezone.now()
    day = day or timezone.localdate(now)
    figures = quality_figures(now=now)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [QUALITY_LOCK_KEY])
        QualitySnapshot.objects.filter(date=day).delete()
        QualitySnapshot.objects.bulk_create(
            [
                QualitySnapshot(
                    date=day,
                    source_id=f.source_id,
                    field=f.field,
                    metric=f.metric,
                    value=f.value,
                    numerator=f.numerator,
                    denominator=f.denominator,
                    computed_at=now,
                )
                for f in figures
            ],
            batch_size=2000,
        )
    return len(figures)


def quality_run_request() -> None:
    """Queue a metrics run (and the alert evaluation after it) once the caller's transaction commits."""
    from crmhub.tasks import quality_metrics_run

    transaction.on_commit(lambda: quality_metrics_run.delay())


#
# Reads for the dashboard
#


def quality_latest_date() -> date | None:
    return QualitySnapshot.objects.order_by("-date").values_list("date", flat=True).first()


def quality_trend(*, metric: str, field: str = "", source_id: int | None = None, days: int = 90) -> list[dict]:
    since = timezone.localdate() - timedelta(days=days)
    qs = QualitySnapshot.objects.filter(metric=metric, field=field, source_id=source_id, date__gte=since)
    return [{"date": d.isoformat(), "value": v} for d, v in qs.order_by("date").values_list("date", "value")]


def quality_may_view(user) -> bool:  # noqa: ANN001
    """The dashboard, its drill-downs, its export and the alerts page: admins, stewards, auditors."""
    from accounts.roles import Role, user_roles

    return bool(user_roles(user) & {Role.ADMIN, Role.STEWARD, Role.AUDITOR})


def quality_dashboard(*, days: int = 30) -> dict:
    """Everything the dashboard shows: the latest snapshot by source and field, the golden
    records' figures, trends, the review backlog, imports and syncs, merges per day."""
    from django.db.models import Count
    from django.db.models.functions import TruncDate

    from imports.models import ImportRun

    latest = quality_latest_date()
    rows = list(QualitySnapshot.objects.filter(date=latest).select_related("source")) if latest else []
    sources = {s.pk: s for s in Source.objects.all()}
    per_source: dict[int, dict] = {}
    golden: dict[str, dict] = {}
    overall: dict[str, float | None] = {}
    for r in rows:
        if r.source_id is None:
            if r.field:
                golden.setdefault(r.field, {})[r.metric] = r
            else:
                overall[r.metric] = r.value
            continue
        entry = per_source.setdefault(r.source_id, {"source": sources.get(r.source_id), "fields": {}, "figures": {}})
        if r.field:
            entry["fields"].setdefault(r.field, {})[r.metric] = r
        else:
            entry["figures"][r.metric] = r
    since = timezone.now() - timedelta(days=days)
    runs = list(
        ImportRun.objects.filter(created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values("day", "kind", "status")
        .annotate(n=Count("id"))
        .order_by("day")
    )
    try:
        from dedup.models import Merge

        merges = list(
            Merge.objects.filter(created_at__gte=since)
            .annotate(day=TruncDate("created_at"))
            .values("day")
            .annotate(n=Count("id"))
            .order_by("day")
        )
    except ImportError:  # pragma: no cover - dedup is part of the project
        merges = []
    return {
        "latest": latest,
        "per_source": [per_source[k] for k in sorted(per_source, key=lambda k: sources[k].code)],
        "golden": dict(sorted(golden.items())),
        "overall": overall,
        "runs": runs,
        "merges": merges,
    }


def quality_chart_data(*, days: int = 90) -> dict:
    """JSON for the dashboard's charts (static/js/quality.js)."""
    since = timezone.localdate() - timedelta(days=days)
    trend: dict[str, dict[str, float | None]] = {}
    wanted = ("validity", "completeness", "duplicate_rate", "conflict_rate")
    for day, metric, field, value in (
        QualitySnapshot.objects.filter(
            date__gte=since, source__isnull=True, metric__in=wanted, field__in=["mobile", "email", "full_name"]
        )
        .order_by("date")
        .values_list("date", "metric", "field", "value")
    ):
        trend.setdefault(f"{metric}:{field}", {})[day.isoformat()] = value
    backlog = {
        d.isoformat(): v
        for d, v in QualitySnapshot.objects.filter(date__gte=since, metric=QualityMetric.REVIEW_BACKLOG)
        .order_by("date")
        .values_list("date", "value")
    }
    latest = quality_latest_date()
    compare = {}
    if latest:
        for code, metric, value in QualitySnapshot.objects.filter(
            date=latest, source__isnull=False, field="mobile", metric__in=["completeness", "validity"]
        ).values_list("source__code", "metric", "value"):
            compare.setdefault(code, {})[metric] = value
    return {"trend": trend, "backlog": backlog, "sources": compare}


def quality_records(*, source_code: str = "", field: str = "", state: str = ""):  # noqa: ANN201
    """The source records behind a figure: of a source, with ``field`` flagged, missing or present."""
    qs = SourceRecord.objects.select_related("source").order_by("source__code", "source_key")
    if source_code:
        qs = qs.filter(source__code=source_code)
    if field:
        if not _SAFE_NAME.match(field):
            raise ValueError(f"unknown field {field!r}")
        if state == "flagged":
            qs = qs.filter(flags__has_key=field)
        elif state == "missing":
            qs = qs.exclude(normalized__has_key=field).exclude(flags__has_key=field)
        elif state == "present":
            qs = qs.filter(normalized__has_key=field)
    return qs


def quality_report_xlsx(*, day: date | None = None) -> bytes:
    """The day's snapshot as a spreadsheet (no customer values: figures only)."""
    import io

    from openpyxl import Workbook

    from accounts.exports import safe_cell

    day = day or quality_latest_date()
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("quality")
    sheet.append(["date", "source", "field", "metric", "value", "numerator", "denominator"])
    if day is not None:
        for r in (
            QualitySnapshot.objects.filter(date=day)
            .select_related("source")
            .order_by("metric", "source__code", "field")
        ):
            sheet.append(
                [
                    day.isoformat(),
                    safe_cell(r.source.code if r.source else ""),
                    safe_cell(r.field),
                    safe_cell(r.metric),
                    r.value,
                    r.numerator,
                    r.denominator,
                ]
            )
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
