"""The import pipeline: read a file in chunks, clean, classify against what the source
already holds, and write (or, for a dry run, only count and sample).

Per chunk: prepare rows (key, raw, cleaned values, flags, a keyed content hash), look up the
existing records of those keys, classify each row as created / updated / unchanged / error,
hand new records to ``link_new_records_to_customers``, write through the connection's writer,
store the rows of the error report, and save progress. Between chunks the run's cancel flag is
checked.

A chunk is one transaction on the run's connection, or, on PostgreSQL with more than one write
lane (``CRMHUB_IMPORT_WRITE_LANES``) and at least ``LANE_MIN_ROWS`` rows, one transaction per
lane, the rows split between the lanes by the stripe of their key and committed together
(``imports.lanes``): the database work of a run then spreads over several cores. Figures,
samples, error report and new ids are the same either way: what needs no database is counted
here, the lanes' outcomes are merged in row order, new ids are drawn here in file order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import pandas as pd
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from accounts.crypto import CIPHERTEXT_PREFIX, encrypt, seal_values, secret_field_names
from crmhub.context import current_change_context
from crmhub.models import Customer, FieldDefinition, SourceRecord
from crmhub.privacy import erased_among, erased_key_hashes
from imports.choices import IssueKind
from imports.cleaning.frame import clean_frame
from imports.cleaning.rules import rules_from
from imports.constants import CHUNK_ROWS, ISSUES_KEPT, LANE_MIN_ROWS, SAMPLES_PER_KIND
from imports.lanes import LanePart, WriteLanes, partition
from imports.locks import key_stripe
from imports.models import ImportRun
from imports.readers import FileLayout, iter_chunks
from imports.rows import ChunkColumns
from imports.writers import Existing, PreparedRow, writer_for_connection

OUTCOMES = ("created", "updated", "unchanged", "rejected")
CLASSIFIED = ("created", "updated", "unchanged")  # the outcomes found against the database


def _sealed(values: dict[str, Any], secret_names: set[str], ciphers: dict[str, str]) -> dict[str, Any]:
    """``seal_values`` with a memo of ciphertexts by plaintext."""
    names = secret_names & values.keys() if secret_names else ()
    if not names:
        return values
    out = dict(values)
    for name in names:
        value = out[name]
        if isinstance(value, str) and value and not value.startswith(CIPHERTEXT_PREFIX):
            sealed = ciphers.get(value)
            if sealed is None:
                sealed = ciphers[value] = encrypt(value)
            out[name] = sealed
    return out


@dataclass
class Issue:
    row_number: int
    key: str
    raw: dict[str, Any]
    reasons: dict[str, str]
    kind: str = IssueKind.ERROR
    # ``raw`` sealed already (a stored row's own copy), else it is sealed when stored
    sealed_raw: dict[str, Any] | None = None


@dataclass
class Tally:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    invalid: int = 0
    errors: int = 0
    issues_kept: int = 0
    samples: dict[str, list] = field(default_factory=lambda: {k: [] for k in OUTCOMES})

    def sample(self, kind: str, item: dict) -> None:
        if len(self.samples[kind]) < SAMPLES_PER_KIND:
            self.samples[kind].append(item)

    def wants(self, kind: str) -> bool:
        return len(self.samples[kind]) < SAMPLES_PER_KIND


@dataclass
class PartOutcome:
    """What classifying some rows of a chunk found (``ImportPipeline._classify``): counts, sample
    candidates of each outcome in row order, customers whose records changed."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    samples: dict[str, list[dict]] = field(default_factory=lambda: {k: [] for k in CLASSIFIED})
    updated_customer_ids: set[int] = field(default_factory=set)


@dataclass
class Classified:
    """Some rows of a chunk classified against what the source holds, ready to be written."""

    new: list[PreparedRow]
    changed: list[tuple[PreparedRow, Existing]]
    unchanged: list[int]
    outcome: PartOutcome


class ChunkSource(Protocol):
    """Where a run's rows come from when it is not a file (a connector): frames of text
    cells, and a hook called inside each chunk's transaction once its rows are written, so
    that the source can save its position atomically with them. A source that keeps that
    position in an attribute ``pending`` (set as it yields each chunk, saved by
    ``chunk_committed``) is read ahead: see ``ImportPipeline._execute_chunk_source``."""

    def chunks(self, chunk_rows: int) -> Iterator[pd.DataFrame]: ...

    def chunk_committed(self) -> None: ...


class ImportPipeline:
    def __init__(
        self,
        run: ImportRun,
        *,
        chunk_rows: int = CHUNK_ROWS,
        chunk_source: ChunkSource | None = None,
    ) -> None:
        self.run = run
        self.chunk_rows = chunk_rows
        options = run.options
        self.chunk_source = chunk_source
        self.layout = FileLayout.from_options(options["layout"]) if "layout" in options else None
        self.mapping: dict[str, str] = dict(options.get("mapping", {}))
        self.key_columns: list[str] = list(options.get("key_columns", []))
        self.dayfirst = bool(options.get("dayfirst", False))
        definitions = list(
            FieldDefinition.objects.values_list("name", "field_type", "is_active", "validation_regex", "choices")
        )
        self.field_types = {name: field_type for name, field_type, *_rest in definitions}
        self.rules = rules_from(
            (name, pattern, choices) for name, _t, active, pattern, choices in definitions if active
        )
        self.secret_fields = secret_field_names()
        self.secret_headers = {h for h, f in self.mapping.items() if f in self.secret_fields}
        self.header_of = {f: h for h, f in self.mapping.items()}
        self.seen: dict[str, int] = {}
        self.extras_memos: dict[str, dict] = {}  # see imports.rows.ChunkColumns
        # Keys of people erased at their request are refused (read here: prepare runs in a thread).
        self.erased_hashes = erased_key_hashes(run.source_id)
        self.tally = Tally()
        # Golden customers whose linked source records this run updated (for survivorship).
        self.updated_customer_ids: set[int] = set()
        self.writer = writer_for_connection()
        self.lane_count = 1  # see _lane_count
        self.lanes: WriteLanes | None = None  # opened at the first chunk written in lanes

    #
    # Driving
    #

    def execute(self) -> bool:
        """Process every chunk; False when the run was cancelled midway."""
        self.lane_count = self._lane_count()
        try:
            if self.chunk_source is not None:
                return self._execute_chunk_source(self.chunk_source)
            with closing(self._prepared_chunks()) as chunks:
                for rows, issues, parts in chunks:
                    self._write_chunk(rows, issues, parts)
                    if self._cancelled():
                        return False
            self._save_progress(final=True)
            return True
        finally:
            if self.lanes is not None:
                self.lanes.close()
                self.lanes = None

    def _lane_count(self) -> int:
        """How many write lanes this run's big chunks get; 1 writes every chunk in one
        transaction on this thread's connection: on SQLite, for a dry run (nothing written), with
        one lane configured, and when the caller holds a transaction open (other connections
        would not see what it has not committed, the run's own row included)."""
        count = settings.CRMHUB_IMPORT_WRITE_LANES
        if count <= 1 or self.run.dry_run or connection.vendor != "postgresql" or connection.in_atomic_block:
            return 1
        return count

    def _partition(self, rows: list[PreparedRow]) -> list[LanePart] | None:
        """The chunk's rows split between the write lanes, or None when one connection writes it."""
        if self.lane_count <= 1 or len(rows) < LANE_MIN_ROWS:
            return None
        return partition(rows, self.lane_count)

    def _cancelled(self) -> bool:
        """Whether the run was asked to stop (its progress is then saved as final)."""
        if ImportRun.objects.filter(pk=self.run.pk, cancel_requested=True).exists():
            self._save_progress(final=True)
            return True
        return False

    def _write_chunk(
        self,
        rows: list[PreparedRow],
        issues: list[Issue],
        parts: list[LanePart] | None,
        after: Callable[[], None] | None = None,
    ) -> None:
        """Classify and write a chunk, store its error-report rows and save progress; ``after``
        runs last, in the same transaction (the leader lane's, with lanes)."""
        if parts is None:
            with transaction.atomic():
                self.writer.begin_bulk_chunk()
                self.process(rows, issues)
                self._save_progress(final=False)
                if after is not None:
                    after()
            return
        self._account(rows, issues)
        wants = self._wants()
        now = timezone.now()  # one time for the whole chunk, as one connection writes it

        def classify(writer: Any, part: list[PreparedRow]) -> Classified:  # noqa: ANN401
            return self._classify(writer, part, wants)  # the lanes hold the locks

        def write(writer: Any, classified: Classified, ids: dict[str, list[int]]) -> PartOutcome:  # noqa: ANN401
            for table, reserved in ids.items():
                writer.reserve_ids(table, reserved)
            self._write_classified(writer, classified, now)
            return classified.outcome

        def finish(writer: Any, outcomes: list[PartOutcome]) -> None:  # noqa: ANN401
            self._merge(outcomes, wants)
            self._store_issues(issues, writer)
            self._save_progress(final=False)
            if after is not None:
                after()

        if self.lanes is None:
            self.lanes = WriteLanes(self.lane_count, source_id=self.run.source_id, run_id=self.run.pk)
        self.lanes.write_chunk(parts, classify, self._new_ids, write, finish)

    def _new_ids(self, parts: list[Classified]) -> list[dict[str, list[int]]]:
        """Ids of the new customers and source records of each lane's part, drawn here in file
        order (as one connection writing the chunk draws them), on this thread's connection."""
        new = sorted((row.row_number, lane) for lane, part in enumerate(parts) for row in part.new)
        ids: list[dict[str, list[int]]] = [{} for _part in parts]
        for table in (Customer._meta.db_table, SourceRecord._meta.db_table):
            for lane_ids in ids:
                lane_ids[table] = []
            for (_row, lane), pk in zip(new, self.writer.allocate_ids(table, len(new)), strict=True):
                ids[lane][table].append(pk)
        return ids

    def _execute_chunk_source(self, source: ChunkSource) -> bool:
        """As ``execute``, over a connector's chunks (rows numbered from 1). The next chunk is
        read and prepared ahead as for files when the source tells its position (``pending``,
        the position after the chunk it yielded last): the position read with each chunk is put
        back before that chunk's ``chunk_committed``, so the position saved is always the one of
        the chunk written, however far the reading has gone. With write lanes the position is
        saved by the leader lane, whose transaction commits after the other lanes'."""
        frames = iter(source.chunks(self.chunk_rows))
        positioned = hasattr(source, "pending")
        # Reading a chunk (which moves ``pending``) and saving one (which reads it) never overlap.
        position_lock = threading.Lock()
        next_row = 1

        def prepare_next() -> tuple[list[PreparedRow], list[Issue], list[LanePart] | None, Any] | None:
            nonlocal next_row
            with position_lock:
                frame = next(frames, None)
                position = getattr(source, "pending", None)
            if frame is None:
                return None
            first, next_row = next_row, next_row + len(frame)
            rows, issues = self.prepare(frame, first)
            return rows, issues, self._partition(rows), position

        prepared = self._read_ahead(prepare_next) if positioned else iter(prepare_next, None)
        with closing(prepared) if positioned else nullcontext():
            for rows, issues, parts, position in prepared:

                def committed(position: Any = position) -> None:
                    with position_lock:
                        if positioned:
                            source.pending = position
                        source.chunk_committed()

                self._write_chunk(rows, issues, parts, committed)
                if self._cancelled():
                    return False
        self._save_progress(final=True)
        return True

    def _prepared_chunks(self) -> Iterator[tuple[list[PreparedRow], list[Issue], list[LanePart] | None]]:
        """Prepared chunks of the file, in order, read ahead (``_read_ahead``), with their rows
        split between the write lanes."""
        chunks = iter_chunks(self.run.file.path, self.layout, chunksize=self.chunk_rows)
        next_row = self.layout.header_row + 2  # 1-based row of the first data row, as a spreadsheet shows it

        def prepare_next() -> tuple[list[PreparedRow], list[Issue], list[LanePart] | None] | None:
            nonlocal next_row
            frame = next(chunks, None)
            if frame is None:
                return None
            first, next_row = next_row, next_row + len(frame)
            rows, issues = self.prepare(frame, first)
            return rows, issues, self._partition(rows)

        return self._read_ahead(prepare_next)

    @staticmethod
    def _read_ahead(prepare_next: Callable[[], Any]) -> Iterator[Any]:
        """What ``prepare_next`` returns, until None. The next chunk is read and prepared in a
        helper thread while the caller writes the current one, so Python and the database work
        at the same time (the thread touches no Django database connection; messages use the
        caller's language)."""
        language = translation.get_language()

        def in_language() -> Any:
            with translation.override(language):
                return prepare_next()

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-prepare") as pool:
            pending = pool.submit(in_language)
            try:
                while (prepared := pending.result()) is not None:
                    pending = pool.submit(in_language)
                    yield prepared
            finally:
                pending.cancel()

    def _save_progress(self, *, final: bool) -> None:
        t = self.tally
        values: dict[str, Any] = {
            "rows_done": t.rows,
            "created": t.created,
            "updated": t.updated,
            "unchanged": t.unchanged,
            "invalid": t.invalid,
            "errors": t.errors,
            "samples": t.samples,
        }
        if final or (self.run.rows_total is not None and t.rows > self.run.rows_total):
            values["rows_total"] = t.rows
        ImportRun.objects.filter(pk=self.run.pk).update(**values)

    #
    # Preparing a chunk
    #

    def _keys(self, frame: pd.DataFrame) -> list[str]:
        if not self.key_columns:
            return [""] * len(frame)
        parts = [frame[c].str.strip() for c in self.key_columns]
        if len(parts) == 1:
            return parts[0].tolist()
        joined = parts[0].str.cat(parts[1:], sep="|")
        complete = pd.concat([p.ne("") for p in parts], axis=1).all(axis=1)
        return joined.where(complete, "").tolist()

    def prepare(self, frame: pd.DataFrame, first_row: int) -> tuple[list[PreparedRow], list[Issue]]:
        """The chunk's rows to write and its rows refused (no key, a key too long, erased or
        seen before). Cleaning, JSON texts, content hashes, sealing and the writer's staging
        fields are built a column at a time (``imports.rows``)."""
        headers = list(frame.columns)
        mapped = {h: f for h, f in self.mapping.items() if h in frame.columns}
        values, flags = clean_frame(frame, mapped, self.field_types, dayfirst=self.dayfirst, rules=self.rules)
        keys = self._keys(frame)
        chunk = ChunkColumns(
            headers,
            [frame.iloc[:, j].to_numpy(dtype=object) for j in range(len(headers))],
            values,
            flags,
            secret_headers=self.secret_headers,
            secret_fields=self.secret_fields,
            extras_memos=self.extras_memos,
        )
        issues: list[Issue] = []
        kept: list[int] = []
        row_numbers: list[int] = []
        key_label = ", ".join(self.key_columns)
        seen = self.seen
        erased = erased_among(self.erased_hashes, keys)
        for i, key in enumerate(keys):
            row_number = first_row + i
            if not key:
                reason = (
                    (_("the key column %(column)s is empty") % {"column": key_label})
                    if self.key_columns
                    else _("no key column was chosen")
                )
                issues.append(Issue(row_number, "", chunk.raw(i), {"": reason}))
                continue
            if len(key) > 255:
                reason = _("the key is longer than 255 characters")
                issues.append(Issue(row_number, key[:255], chunk.raw(i), {"": reason}))
                continue
            if key in erased:
                reason = _("this key belongs to a person whose data was erased at their request; not stored")
                issues.append(Issue(row_number, "", {}, {"": reason}))  # nothing of the row is kept, key included
                continue
            first = seen.get(key)
            if first is not None:
                issues.append(
                    Issue(
                        row_number,
                        key,
                        chunk.raw(i),
                        {"": _("the key appears again; its first row is %(row)s") % {"row": first}},
                    )
                )
                continue
            seen[key] = row_number
            kept.append(i)
            row_numbers.append(row_number)
        # Work for the writer done here, ahead (prepare runs in a helper thread while the
        # previous chunk is written): sealing, the staging fields, and what a new golden
        # customer needs from Python.
        ahead = not self.run.dry_run
        in_sql = getattr(self.writer, "customers_in_sql", False)
        rows = chunk.prepared_rows(
            kept,
            keys,
            row_numbers,
            seal=ahead,
            stage=ahead and getattr(self.writer, "stages_copy_text", False),
            extras=getattr(self.writer, "customer_extras", None) if ahead and in_sql else None,
        )
        return rows, issues

    def _seal(self, row: PreparedRow, ciphers: dict[str, str]) -> None:
        """Secret values encrypted; the raw and normalized copies of one value share its ciphertext
        (``ciphers``, per chunk), so each secret value is encrypted once. The JSON texts from
        ``prepare`` stay only where nothing was sealed."""
        row.sealed_raw = _sealed(row.raw, self.secret_headers, ciphers)
        if row.sealed_raw is not row.raw:
            row.sealed_raw_json = None
        row.sealed_normalized = _sealed(row.normalized, self.secret_fields, ciphers)
        if row.sealed_normalized is not row.normalized:
            row.sealed_normalized_json = None
        row.sealed = True

    def _reasons(self, flags: dict[str, str]) -> dict[str, str]:
        return {self.header_of.get(name, name): reason for name, reason in flags.items()}

    #
    # Classifying and writing a chunk
    #

    def process(self, rows: list[PreparedRow], issues: list[Issue]) -> None:
        """Classify and write a chunk on this thread's connection, in the caller's transaction."""
        self._account(rows, issues)
        wants = self._wants()
        if not self.run.dry_run:
            self.writer.lock_source(self.run.source_id, {key_stripe(row.key) for row in rows})
        classified = self._classify(self.writer, rows, wants)
        self._write_classified(self.writer, classified, timezone.now())
        self._merge([classified.outcome], wants)
        self._store_issues(issues)

    def _account(self, rows: list[PreparedRow], issues: list[Issue]) -> None:
        """The chunk's figures that need no database: rows, invalid rows (whose issues are added
        to ``issues``), errors and their samples."""
        t = self.tally
        for row in rows:
            if row.flags:
                t.invalid += 1
                sealed_raw = row.sealed_raw if row.sealed else None
                issues.append(
                    Issue(row.row_number, row.key, row.raw, self._reasons(row.flags), IssueKind.INVALID, sealed_raw)
                )
        t.rows += len(rows) + sum(1 for i in issues if i.kind == IssueKind.ERROR)
        for issue in issues:
            if issue.kind == IssueKind.ERROR:
                t.errors += 1
                if t.wants("rejected"):
                    t.sample("rejected", {"row": issue.row_number, "key": issue.key, "reasons": issue.reasons})

    def _wants(self) -> dict[str, int]:
        """How many more samples of each classified outcome the run keeps."""
        return {kind: SAMPLES_PER_KIND - len(self.tally.samples[kind]) for kind in CLASSIFIED}

    def _classify(self, writer: Any, rows: list[PreparedRow], wants: dict[str, int]) -> Classified:  # noqa: ANN401
        """``rows`` (some or all of a chunk's, in row order) classified against what the source
        holds, on the calling thread's connection, with samples of each outcome (at most as many
        as ``wants``). The source's locks must be held. Touches no state of the run: the outcome
        is merged by ``_merge``."""
        run = self.run
        out = PartOutcome()
        existing = writer.existing(run.source_id, [r.key for r in rows]) if rows else {}
        new: list[PreparedRow] = []
        changed: list[tuple[PreparedRow, Existing]] = []
        unchanged: list[int] = []
        created_samples, unchanged_samples = out.samples["created"], out.samples["unchanged"]
        for row in rows:
            found = existing.get(row.key)
            if found is None:
                new.append(row)
                if len(created_samples) < wants["created"]:
                    created_samples.append(
                        {
                            "row": row.row_number,
                            "key": row.key,
                            "values": seal_values(row.normalized, self.secret_fields),
                        }
                    )
            elif found.record_hash != row.record_hash:
                changed.append((row, found))
                if found.customer_id is not None and not run.dry_run:
                    out.updated_customer_ids.add(found.customer_id)
            else:
                unchanged.append(found.pk)
                if len(unchanged_samples) < wants["unchanged"]:
                    unchanged_samples.append({"row": row.row_number, "key": row.key})
        out.samples["updated"] = self._update_samples(changed[: max(wants["updated"], 0)])
        out.created, out.updated, out.unchanged = len(new), len(changed), len(unchanged)
        return Classified(new, changed, unchanged, out)

    def _write_classified(self, writer: Any, classified: Classified, now: datetime) -> None:  # noqa: ANN401
        """Write classified rows through ``writer`` (nothing for a dry run)."""
        if self.run.dry_run:
            return
        run = self.run
        ciphers: dict[str, str] = {}
        for row in classified.new:
            if not row.sealed:
                self._seal(row, ciphers)
        for row, _found in classified.changed:
            if not row.sealed:
                self._seal(row, ciphers)
        # New records are linked to golden customers by the writer (imports.linking).
        writer.write(
            run_id=run.pk,
            source_id=run.source_id,
            new=classified.new,
            changed=classified.changed,
            unchanged=classified.unchanged,
            ctx=current_change_context(),
            now=now,
        )

    def _merge(self, outcomes: list[PartOutcome], wants: dict[str, int]) -> None:
        """The outcomes of a chunk's parts into the run's tally: counts added, and of each
        outcome's sample candidates the first wanted in row order (as one part would give)."""
        t = self.tally
        for outcome in outcomes:
            t.created += outcome.created
            t.updated += outcome.updated
            t.unchanged += outcome.unchanged
            self.updated_customer_ids |= outcome.updated_customer_ids
        for kind in CLASSIFIED:
            candidates = [item for outcome in outcomes for item in outcome.samples[kind]]
            if len(outcomes) > 1:
                candidates.sort(key=lambda item: item["row"])
            for item in candidates[: max(wants[kind], 0)]:
                t.sample(kind, item)

    def _update_samples(self, picked: list[tuple[PreparedRow, Existing]]) -> list[dict]:
        """Samples of updated rows: the values before (read now, before the write) and after."""
        if not picked:
            return []
        from accounts.crypto import unseal_values

        before = dict(SourceRecord.objects.filter(pk__in=[e.pk for _r, e in picked]).values_list("pk", "normalized"))
        samples = []
        for row, existing in picked:
            old = unseal_values(before.get(existing.pk) or {})
            names = sorted(set(old) | set(row.normalized))
            diff_before = {n: old.get(n) for n in names if old.get(n) != row.normalized.get(n)}
            diff_after = {n: row.normalized.get(n) for n in diff_before}
            raw_note = not diff_before  # only unmapped columns changed
            samples.append(
                {
                    "row": row.row_number,
                    "key": row.key,
                    "raw_only": raw_note,
                    "before": seal_values(diff_before, self.secret_fields),
                    "after": seal_values(diff_after, self.secret_fields),
                }
            )
        return samples

    def _store_issues(self, issues: list[Issue], writer: Any = None) -> None:  # noqa: ANN401
        room = ISSUES_KEPT - self.tally.issues_kept
        if room <= 0 or not issues:
            return
        kept = sorted(issues, key=lambda i: i.row_number)[:room]
        (writer or self.writer).store_issues(
            self.run.pk,
            [
                (
                    i.row_number,
                    i.kind,
                    i.key,
                    i.raw
                    if not self.secret_headers
                    else i.sealed_raw
                    if i.sealed_raw is not None
                    else seal_values(i.raw, self.secret_headers),
                    i.reasons,
                )
                for i in kept
            ],
        )
        self.tally.issues_kept += len(kept)
