"""Survivorship: which value the golden record keeps for each field, chosen among the values
of its linked source records by a per-field rule (``SurvivorshipRule``), unless a person chose
a value that still holds (``FieldOverride``).

* ``golden_values_propose`` is what the compare-and-merge screen pre-fills and what a merge
  applies when the steward chooses nothing; each proposal says whose value it is and why.
* ``golden_record_recompute`` re-chooses the values of customers whose linked source records
  changed (after an import run, a connector sync or a push), set-based, and writes only what
  changes.
* ``field_overrides_record`` remembers a person's choice (``crmhub.editing.customer_update``
  and merges call it).

The strategies (see docs/survivorship.md): ``source_trust`` (the admin's trust order of
sources, then the sources' trust rank), ``most_recent`` (the latest source-record update),
``most_complete`` (the record with the most non-blank fields), ``most_frequent`` (the value
most linked records agree on) and ``longest``; ties are broken by the rule's tie-break, then
by record id, so the choice is deterministic. Fields no source record has a value for keep
the golden record's own value (a source that is silent never blanks a known value).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from crmhub.models import Customer, Source, SourceRecord
from dedup.choices import SurvivorshipStrategy

# The fields survivorship chooses a value for (tags and custom values are united by merges,
# not chosen).
CHOSEN_FIELDS = tuple(n for n in Customer.CORE_FIELDS if n != "tags")

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class FieldProposal:
    field: str
    value: Any
    customer_id: int | None  # whose value it is; None when no customer has one
    rule: str  # the rule that chose it
    reason: str  # the rule, said for a person
    source: str = ""  # code of the source whose record gave the value, if one did
    source_record_id: int | None = None


@dataclass(frozen=True)
class Rule:
    field: str
    strategy: str
    trust_order: tuple[str, ...] = ()
    tie_break: str = "most_recent"
    override_policy: str = "until_newer"


@dataclass(frozen=True)
class Candidate:
    """One source record's value for one field."""

    value: Any
    customer_id: int
    record_id: int
    source_id: int
    updated: dt.datetime  # the record's last content update (at the source if known)
    first_seen: dt.datetime
    filled: int  # how many non-blank fields the record has


@dataclass(frozen=True)
class Override:
    customer_id: int
    field: str
    value: Any
    set_at: dt.datetime
    basis: dict
    set_by_id: int | None = None


def _blank(value: Any) -> bool:  # noqa: ANN401
    return value is None or value == "" or value == []


#
# Rules
#


def default_rules() -> dict[str, dict]:
    """The shipped default rule of each field (also written by the data migration)."""
    return import_module("dedup.migrations.0004_survivorship").DEFAULT_RULES


def rules_load() -> dict[str, Rule]:
    """Every chosen field's rule: the admin's row, else the shipped default."""
    from dedup.models import SurvivorshipRule

    defaults = default_rules()
    rows = {r.field: r for r in SurvivorshipRule.objects.all()}
    out = {}
    for name in CHOSEN_FIELDS:
        row = rows.get(name)
        if row is not None:
            out[name] = Rule(name, row.strategy, tuple(row.trust_order or ()), row.tie_break, row.override_policy)
        else:
            spec = defaults.get(name, {"strategy": "most_recent"})
            out[name] = Rule(
                name,
                spec["strategy"],
                tuple(spec.get("trust_order", ())),
                spec.get("tie_break", "most_recent"),
                spec.get("override_policy", "until_newer"),
            )
    return out


class SourceIndex:
    """Source codes and trust ranks, read once per call."""

    def __init__(self) -> None:
        self.code: dict[int, str] = {}
        self.rank: dict[int, int] = {}
        for pk, code, rank in Source.objects.values_list("pk", "code", "trust_rank"):
            self.code[pk] = code
            self.rank[pk] = rank

    def trust_key(self, rule: Rule, source_id: int) -> tuple[int, int]:
        code = self.code.get(source_id, "")
        order = rule.trust_order
        position = order.index(code) if code in order else len(order)
        return position, -self.rank.get(source_id, 0)


#
# Values of source records
#

_CHAR_LIMITS = {
    f.attname: f.max_length
    for f in Customer._meta.concrete_fields
    if getattr(f, "max_length", None) and f.attname != "id_number"
}


_CORE = frozenset(CHOSEN_FIELDS)


def record_values(normalized: dict, flags: dict | None) -> dict[str, Any]:
    """A source record's values as golden-record values: the same as the import's
    ``customer_values_from_normalized`` for core fields (flagged and blank values left out,
    dates parsed), secrets unsealed, text cut to the column as the import does. One pass over
    the record: recompute calls this for every linked record of every customer."""
    from accounts.crypto import CIPHERTEXT_PREFIX, decrypt

    out: dict[str, Any] = {}
    for name, value in (normalized or {}).items():
        if name not in _CORE or value is None or value == "" or value == [] or (flags and name in flags):
            continue
        if isinstance(value, str):
            if value.startswith(CIPHERTEXT_PREFIX):
                value = decrypt(value)
            if name == "birth_date":
                try:
                    value = dt.date.fromisoformat(value)
                except ValueError:
                    continue  # an unparsed date stays in the source record, flagged there
            else:
                limit = _CHAR_LIMITS.get(name)
                if limit is not None and len(value) > limit:
                    value = value[:limit]
        out[name] = value
    return out


@dataclass
class _Record:
    pk: int
    customer_id: int
    source_id: int
    values: dict[str, Any]
    updated: dt.datetime
    first_seen: dt.datetime

    def candidate(self, name: str) -> Candidate:
        return Candidate(
            self.values[name],
            self.customer_id,
            self.pk,
            self.source_id,
            self.updated,
            self.first_seen,
            len(self.values),
        )


RECORD_COLUMNS = (
    "pk",
    "customer_id",
    "source_id",
    "normalized",
    "flags",
    "source_updated_at",
    "updated_at",
    "first_seen_at",
)


def _record_from_row(row: tuple) -> _Record:
    pk, customer_id, source_id, normalized, flags, source_updated, updated, first_seen = row
    return _Record(
        pk,
        customer_id,
        source_id,
        record_values(normalized, flags),
        source_updated or updated or _EPOCH,
        first_seen or _EPOCH,
    )


def _records_of(records: Iterable[SourceRecord]) -> list[_Record]:
    return [
        _record_from_row(tuple(getattr(r, a) for a in RECORD_COLUMNS)) for r in records if r.customer_id is not None
    ]


def _any(qs, column: str, ids: Iterable[int]):  # noqa: ANN001, ANN202
    """``qs`` narrowed to ``column`` in ``ids``: on PostgreSQL one array parameter
    (``= ANY(%s)``) instead of thousands of placeholders the driver would have to parse."""
    ids = list(ids)
    if connection.vendor != "postgresql":
        return qs.filter(**{f"{column}__in": ids})
    table = qs.model._meta.db_table
    col = qs.model._meta.get_field(column).column
    # The ids as one bigint[] literal: psycopg's list dumper inspects every element.
    return qs.extra(where=[f'"{table}"."{col}" = ANY(%s::bigint[])'], params=[int_array(ids)])  # noqa: S610 - names from the model


def int_array(ids: Iterable[int]) -> str:
    """``ids`` (integers) as a PostgreSQL array literal for a ``%s::bigint[]`` parameter: the same
    array psycopg would send for the list, without its per-element checks (a regex per element:
    over 10 % of a batch merge's Python time went there)."""
    return "{" + ",".join(map(str, map(int, ids))) + "}"


def _records_for(customer_ids: Iterable[int]) -> list[_Record]:
    rows = _any(SourceRecord.objects.all(), "customer", customer_ids).order_by("pk").values_list(*RECORD_COLUMNS)
    return [_record_from_row(row) for row in rows]


def value_fingerprint(value: Any) -> str:  # noqa: ANN401
    """A keyed fingerprint of a value (overrides remember which source values they saw
    without keeping a second copy of them)."""
    from accounts.crypto import content_hash

    if isinstance(value, (dt.date, dt.datetime)):
        value = value.isoformat()
    return content_hash({"v": value})[:24]


#
# Choosing
#


def _order_key(rule: Rule, kind: str, c: Candidate, sources: SourceIndex, counts: Counter | None) -> tuple:
    if kind == "source_trust":
        return sources.trust_key(rule, c.source_id)
    if kind == "most_recent":
        return (-c.updated.timestamp(),)
    if kind == "most_complete":
        return (-c.filled,)
    if kind == "longest":
        return (-len(str(c.value)),)
    if kind == "most_frequent":
        return (-counts[_hashable(c.value)],)
    return (c.first_seen.timestamp(),)  # oldest


def _hashable(value: Any) -> Any:  # noqa: ANN401
    return tuple(value) if isinstance(value, list) else value


def choose(rule: Rule, candidates: list[Candidate], sources: SourceIndex) -> Candidate | None:
    """The winning candidate under ``rule`` (its strategy, then its tie-break, then the
    record id), or None when no record has a value."""
    if not candidates:
        return None
    if len(candidates) == 1:
        return candidates[0]
    counts = Counter(_hashable(c.value) for c in candidates) if rule.strategy == "most_frequent" else None
    return min(
        candidates,
        key=lambda c: (
            _order_key(rule, rule.strategy, c, sources, counts),
            _order_key(rule, rule.tie_break, c, sources, counts),
            c.record_id,
        ),
    )


_TIE_BREAK_REASONS = {
    "most_recent": gettext_lazy("the most recently updated"),
    "source_trust": gettext_lazy("from the most trusted source"),
    "oldest": gettext_lazy("the first seen"),
}


def _reason(rule: Rule, winner: Candidate, candidates: list[Candidate], sources: SourceIndex) -> str:
    code = sources.code.get(winner.source_id, "?")
    if len({_hashable(c.value) for c in candidates}) == 1:
        if len(candidates) == 1:
            return _("the only value, from %(source)s") % {"source": code}
        return _("all %(n)s records agree") % {"n": len(candidates)}
    counts = Counter(_hashable(c.value) for c in candidates) if rule.strategy == "most_frequent" else None
    mine = _order_key(rule, rule.strategy, winner, sources, counts)
    if any(
        _hashable(c.value) != _hashable(winner.value) and _order_key(rule, rule.strategy, c, sources, counts) == mine
        for c in candidates
    ):
        # The strategy could not tell the values apart: say what decided.
        return _("%(strategy)s: a tie; %(tie_break)s (%(source)s)") % {
            "strategy": SurvivorshipStrategy(rule.strategy).label,
            "tie_break": _TIE_BREAK_REASONS.get(rule.tie_break, rule.tie_break),
            "source": code,
        }
    if rule.strategy == "source_trust":
        return _("from the most trusted source (%(source)s)") % {"source": code}
    if rule.strategy == "most_recent":
        return _("most recently updated (%(source)s, %(when)s)") % {
            "source": code,
            "when": timezone.localtime(winner.updated).strftime("%Y-%m-%d %H:%M"),
        }
    if rule.strategy == "most_complete":
        return _("from the most complete record (%(source)s, %(n)s fields)") % {"source": code, "n": winner.filled}
    if rule.strategy == "most_frequent":
        same = sum(1 for c in candidates if _hashable(c.value) == _hashable(winner.value))
        return _("%(k)s of %(n)s records have it") % {"k": same, "n": len(candidates)}
    return _("the longest value (%(source)s)") % {"source": code}


def override_holds(rule: Rule, override: Override, candidates: list[Candidate]) -> bool:
    """Whether a person's choice still stands: always under an "always hold" rule; otherwise
    until a source record offers a value it had not seen, updated after the choice."""
    if rule.override_policy == "always":
        return True
    for c in candidates:
        if c.updated > override.set_at and override.basis.get(str(c.record_id)) != value_fingerprint(c.value):
            return False
    return True


def _candidates(records: list[_Record], name: str) -> list[Candidate]:
    return [r.candidate(name) for r in records if name in r.values]


def _override_value(override: Override) -> Any:  # noqa: ANN401
    value = override.value
    if isinstance(value, str) and override.field == "birth_date" and value:
        return dt.date.fromisoformat(value)
    if override.field == "id_number" and isinstance(value, str):
        from accounts.crypto import unseal_values

        return unseal_values({"v": value})["v"]
    return value


#
# Proposals (merges and the compare screen)
#


def golden_values_propose(
    customers: list[Customer],
    *,
    survivor_id: int,
    records: Iterable[SourceRecord] | None = None,
    overrides: dict[int, dict[str, Override]] | None = None,
    rules: dict[str, Rule] | None = None,
    sources: SourceIndex | None = None,
    explain: bool = True,
) -> dict[str, FieldProposal]:
    """A value for each field of the golden record the ``customers`` merged into
    ``survivor_id`` would be, with whose value it is and why.

    A person's override that still holds wins (the survivor's first, else the latest);
    otherwise the field's rule chooses among the linked source records (``records``, read
    when not given); a field no record has a value for keeps the survivor's own value, else
    the oldest other customer's. ``explain=False`` leaves the reasons out (batch merges
    store none, and wording them costs more than choosing)."""
    by_id = {c.pk: c for c in customers}
    survivor = by_id[survivor_id]
    others = sorted((c for c in customers if c.pk != survivor_id), key=lambda c: c.pk)
    rules = rules or rules_load()
    sources = sources or SourceIndex()
    recs = _records_of(records) if records is not None else _records_for(by_id)
    recs = [r for r in recs if r.customer_id in by_id]
    if overrides is None:
        overrides = overrides_for(by_id)
    out: dict[str, FieldProposal] = {}
    for name in CHOSEN_FIELDS:
        rule = rules[name]
        candidates = _candidates(recs, name)
        held = [o[name] for cid in [survivor_id, *(c.pk for c in others)] if name in (o := overrides.get(cid, {}))]
        held = [o for o in held if override_holds(rule, o, candidates)]
        if held:
            chosen = held[0] if held[0].customer_id == survivor_id else max(held, key=lambda o: o.set_at)
            out[name] = FieldProposal(
                name,
                _override_value(chosen),
                chosen.customer_id,
                "override",
                _("chosen by a person on %(when)s") % {"when": timezone.localtime(chosen.set_at).strftime("%Y-%m-%d")}
                if explain
                else "",
            )
            continue
        winner = choose(rule, candidates, sources)
        if winner is not None:
            out[name] = FieldProposal(
                name,
                winner.value,
                winner.customer_id,
                rule.strategy,
                _reason(rule, winner, candidates, sources) if explain else "",
                sources.code.get(winner.source_id, ""),
                winner.record_id,
            )
            continue
        own = getattr(survivor, name)
        if not _blank(own):
            reason = _("no source has it; kept from the survivor") if explain else ""
            out[name] = FieldProposal(name, own, survivor.pk, "survivor", reason)
            continue
        donor = next((c for c in others if not _blank(getattr(c, name))), None)
        if donor is None:
            out[name] = FieldProposal(name, own, None, "none", _("no record has a value") if explain else "")
        else:
            reason = _("no source has it; the oldest other record's") if explain else ""
            out[name] = FieldProposal(name, getattr(donor, name), donor.pk, "fill_blank", reason)
    return out


def golden_values_choose_many(
    clusters: list[list[int]],
    customers: dict[int, dict[str, Any]],
    records: dict[int, list[_Record]],
    *,
    overrides: dict[int, dict[str, Override]],
    rules: dict[str, Rule],
    sources: SourceIndex,
) -> list[tuple[dict[str, Any], dict[str, int]]]:
    """``golden_values_propose`` for many clusters at once, from plain rows (batch merges).

    ``clusters`` list the survivor first, then the others in id order; ``customers`` hold each
    member's chosen fields (id → {field: value}); ``records`` the cluster's linked source
    records by survivor id, in record id order. Per cluster: (the value of every chosen
    field, field → customer whose held override gave it). The values are exactly those
    ``golden_values_propose`` gives (a test holds the two equal); no proposal objects, no
    reasons, and records that agree on a field need no rule."""
    out: list[tuple[dict[str, Any], dict[str, int]]] = []
    for members in clusters:
        survivor_id = members[0]
        recs = [r for r in records.get(survivor_id, ()) if r.customer_id in customers]
        held_by = [(cid, overrides[cid]) for cid in members if cid in overrides]
        values: dict[str, Any] = {}
        origins: dict[str, int] = {}
        # The records holding each field, in record order (one pass over the records' values
        # instead of one over the records per field).
        holding: dict[str, list[_Record]] = {}
        for r in recs:
            for name in r.values:
                holding.setdefault(name, []).append(r)
        for name in CHOSEN_FIELDS:
            present = holding.get(name, ())
            if held_by:
                held = [o[name] for _cid, o in held_by if name in o]
                if held:
                    candidates = [r.candidate(name) for r in present]
                    held = [o for o in held if override_holds(rules[name], o, candidates)]
                    if held:
                        chosen = held[0] if held[0].customer_id == survivor_id else max(held, key=lambda o: o.set_at)
                        values[name] = _override_value(chosen)
                        origins[name] = chosen.customer_id
                        continue
            if present:
                first = present[0].values[name]
                if all(type(r.values[name]) is type(first) and r.values[name] == first for r in present[1:]):
                    values[name] = first  # they agree: whichever wins, the value is this
                else:
                    values[name] = choose(rules[name], [r.candidate(name) for r in present], sources).value
                continue
            own = customers[survivor_id][name]
            if _blank(own):
                donor = next((customers[c][name] for c in members[1:] if not _blank(customers[c][name])), None)
                values[name] = own if donor is None else donor
            else:
                values[name] = own
        out.append((values, origins))
    return out


#
# Overrides
#


def overrides_for(customer_ids: Iterable[int]) -> dict[int, dict[str, Override]]:
    from dedup.models import FieldOverride

    out: dict[int, dict[str, Override]] = {}
    for o in _any(FieldOverride.objects.all(), "customer", customer_ids):
        out.setdefault(o.customer_id, {})[o.field] = Override(
            o.customer_id, o.field, o.value, o.set_at, o.basis or {}, o.set_by_id
        )
    return out


def _json_value(name: str, value: Any) -> Any:  # noqa: ANN401
    from accounts.crypto import seal_values, secret_field_names

    if isinstance(value, (dt.date, dt.datetime)):
        value = value.isoformat()
    if name in secret_field_names():
        value = seal_values({name: value}, {name})[name]
    return value


def field_overrides_record(
    *,
    customer_id: int,
    values: dict[str, Any],
    user=None,  # noqa: ANN001
    channel: str = "",
    ref: str = "",
    records: Iterable[SourceRecord] | None = None,
) -> None:
    """Remember that a person chose ``values`` for the customer (one override per field,
    replacing an earlier one), with the source values they were chosen against."""
    from dedup.models import FieldOverride

    names = [n for n in values if n in CHOSEN_FIELDS]
    if not names:
        return
    recs = _records_of(records) if records is not None else _records_for([customer_id])
    now = timezone.now()
    for name in names:
        basis = {str(c.record_id): value_fingerprint(c.value) for c in _candidates(recs, name)}
        FieldOverride.objects.update_or_create(
            customer_id=customer_id,
            field=name,
            defaults={
                "value": _json_value(name, values[name]),
                "basis": basis,
                "set_by": user if getattr(user, "is_authenticated", False) else None,
                "set_at": now,
                "channel": channel[:16],
                "ref": ref[:200],
            },
        )


def overrides_snapshot(customer_ids: Iterable[int]) -> dict[int, list[dict]]:
    """The customers' overrides as rows (merges keep the survivor's to restore on undo)."""
    from dedup.models import FieldOverride

    out: dict[int, list[dict]] = {}
    for row in (
        FieldOverride.objects.filter(customer_id__in=list(customer_ids))
        .order_by("customer_id", "field")
        .values("customer_id", "field", "value", "basis", "set_by_id", "set_at", "channel", "ref")
    ):
        out.setdefault(row.pop("customer_id"), []).append(row)
    return out


def overrides_restore(customer_id: int, rows: list[dict], fields: Iterable[str]) -> None:
    """Put the customer's overrides of ``fields`` back to ``rows`` (a snapshot)."""
    from dedup.models import FieldOverride

    fields = set(fields)
    FieldOverride.objects.filter(customer_id=customer_id, field__in=fields).delete()
    FieldOverride.objects.bulk_create(
        [
            FieldOverride(
                customer_id=customer_id,
                field=r["field"],
                value=r["value"],
                basis=r["basis"],
                set_by_id=r["set_by_id"],
                set_at=dt.datetime.fromisoformat(r["set_at"]) if isinstance(r["set_at"], str) else r["set_at"],
                channel=r["channel"],
                ref=r["ref"],
            )
            for r in rows
            if r["field"] in fields
        ]
    )


#
# Recompute
#

RECOMPUTE_CHUNK = 2000


def golden_record_recompute(customer_ids: Iterable[int], *, chunk: int = RECOMPUTE_CHUNK) -> dict[str, int]:
    """Re-choose the golden values of ``customer_ids`` from their linked source records under
    the rules and write only what changes: set-based updates with history attributed to the
    current change context (the run's channel and reference), one change-feed ``updated``
    event per changed customer, superseded overrides removed. Merged or erased customers are
    skipped. Returns counts."""
    ids = sorted({int(i) for i in customer_ids if i is not None})
    totals = {"customers": 0, "changed": 0, "overrides_superseded": 0}
    if not ids:
        return totals
    rules = rules_load()
    sources = SourceIndex()
    for start in range(0, len(ids), chunk):
        part = _recompute_chunk(ids[start : start + chunk], rules, sources)
        for key, value in part.items():
            totals[key] += value
    return totals


@transaction.atomic
def _recompute_chunk(ids: list[int], rules: dict[str, Rule], sources: SourceIndex) -> dict[str, int]:
    """Choose without locks (most customers of a run change nothing), then lock only the
    customers that change and check their versions; those changed meanwhile (an edit, a
    merge) are chosen again under their locks."""
    from crmhub.context import current_change_context
    from crmhub.outbox import changes_record_bulk
    from dedup.models import FieldOverride

    count, updates, changes, superseded, versions = _recompute_plan(ids, rules, sources, lock=False)
    touched = set(updates) | {c for c, _n in superseded}
    if touched:
        now = dict(_any(Customer.objects.select_for_update(), "id", sorted(touched)).values_list("pk", "version"))
        stale = {pk for pk in touched if now.get(pk) != versions[pk]}
        if stale:
            _n, again, again_changes, again_superseded, _v = _recompute_plan(sorted(stale), rules, sources, lock=True)
            updates = {pk: v for pk, v in updates.items() if pk not in stale} | again
            changes = [c for c in changes if c.customer_id not in stale] + again_changes
            superseded = [s for s in superseded if s[0] not in stale] + again_superseded
    if updates:
        ctx = current_change_context()
        attrs = {"change_channel": ctx.channel, "change_ref": (ctx.ref or "")[:200]}
        if connection.vendor == "postgresql":
            _write_sql(updates, user_id=getattr(ctx.user, "pk", None), attrs=attrs)
        else:
            _write_orm(updates, user=ctx.user, attrs=attrs)
        changes_record_bulk(changes)
    if superseded:
        wanted = set(superseded)
        doomed = [
            pk
            for pk, customer_id, name in FieldOverride.objects.filter(
                customer_id__in={c for c, _n in superseded}
            ).values_list("pk", "customer_id", "field")
            if (customer_id, name) in wanted
        ]
        FieldOverride.objects.filter(pk__in=doomed).delete()
    return {"customers": count, "changed": len(updates), "overrides_superseded": len(superseded)}


def _recompute_plan(ids: list[int], rules: dict[str, Rule], sources: SourceIndex, *, lock: bool) -> tuple:
    """What recomputing ``ids`` would write: (active customers, updates by id, change-feed
    events, superseded overrides, versions read)."""
    from accounts.crypto import blind_index
    from crmhub.choices import ChangeEventType, CustomerStatus
    from crmhub.outbox import Change, feed_values
    from dedup.names import pinyin

    # Plain rows, not model instances: most customers of a run change nothing or one field.
    # The status is filtered here, not in SQL: right after a bulk import the table's statistics
    # are stale and the planner would scan the status index and the whole table instead of
    # using the primary key.
    qs = Customer.objects.select_for_update() if lock else Customer.objects.all()
    read = [
        row
        for row in _any(qs, "id", ids).order_by("pk").values_list("pk", "status", "version", *CHOSEN_FIELDS)
        if row[1] == CustomerStatus.ACTIVE
    ]
    versions = {row[0]: row[2] for row in read}
    rows = [(row[0], *row[3:]) for row in read]
    by_customer: dict[int, list[_Record]] = {}
    for record in _records_for([r[0] for r in rows]):
        by_customer.setdefault(record.customer_id, []).append(record)
    overrides = overrides_for([r[0] for r in rows])
    superseded: list[tuple[int, str]] = []
    updates: dict[int, dict[str, Any]] = {}
    changes: list[Change] = []
    for row in rows:
        pk = row[0]
        recs = by_customer.get(pk)
        if not recs:
            continue
        current = dict(zip(CHOSEN_FIELDS, row[1:], strict=True))
        mine = overrides.get(pk, {})
        new: dict[str, Any] = {}
        single = recs[0].values if len(recs) == 1 else None
        for name in CHOSEN_FIELDS:
            if single is not None:
                if name not in single:
                    continue
                candidates = None
                value = single[name]
            else:
                present = [r.values[name] for r in recs if name in r.values]
                if not present:
                    continue
                candidates = None
                value = present[0]
                # Records that agree need no rule (the common case for true duplicates).
                if any(v != value for v in present[1:]):
                    candidates = _candidates(recs, name)
                    value = choose(rules[name], candidates, sources).value
            override = mine.get(name)
            if override is not None:
                if candidates is None:
                    candidates = _candidates(recs, name)
                if override_holds(rules[name], override, candidates):
                    continue
                superseded.append((pk, name))
            if current[name] != value:
                new[name] = value
        if not new:
            continue
        changes.append(Change(ChangeEventType.UPDATED, pk, sorted(new), feed_values(new)))
        if "full_name" in new:
            new["name_pinyin"] = pinyin(new["full_name"]) or ""
        if "id_number" in new:
            new["id_number_hash"] = blind_index(new["id_number"])
        updates[pk] = new
    return len(rows), updates, changes, superseded, versions


def _write_orm(updates: dict[int, dict[str, Any]], *, user, attrs: dict) -> None:  # noqa: ANN001
    from dedup.services import _update_with_history

    now = timezone.now()
    customers = list(Customer.objects.filter(pk__in=list(updates)).order_by("pk"))
    fields: set[str] = {"version", "updated_at"}
    for customer in customers:
        for name, value in updates[customer.pk].items():
            setattr(customer, name, value)
            fields.add(name)
        customer.version += 1
        customer.updated_at = now
    _update_with_history(Customer, customers, sorted(fields), user=user, attrs=attrs)


def _write_sql(updates: dict[int, dict[str, Any]], *, user_id: int | None, attrs: dict) -> None:
    """PostgreSQL: one ``UPDATE … FROM (VALUES …)`` per set of changed columns and batch, and
    the history rows copied from the updated rows by the database (``INSERT … SELECT``): no
    model instances, no per-row history objects."""
    qn = connection.ops.quote_name
    table = qn(Customer._meta.db_table)
    now = timezone.now()
    groups: dict[tuple[str, ...], list[int]] = {}
    for pk, new in updates.items():
        groups.setdefault(tuple(sorted(new)), []).append(pk)
    history = Customer.history.model
    tracked = [f.column for f in history.tracked_fields]
    history_cols = ", ".join(
        qn(c)
        for c in [
            *tracked,
            "history_date",
            "history_type",
            "history_user_id",
            "history_change_reason",
            "change_channel",
            "change_ref",
        ]
    )
    select_cols = ", ".join(qn(c) for c in tracked)
    connection.ensure_connection()
    with connection.connection.cursor() as cursor:
        for names, pks in groups.items():
            fields = [Customer._meta.get_field(n) for n in names]
            casts = ["bigint"] + [f.db_type(connection) for f in fields]
            row_sql = "(" + ", ".join(f"%s::{c}" for c in casts) + ")"
            sets = ", ".join(f"{qn(f.column)} = v.{qn(f.column)}" for f in fields)
            value_names = ", ".join(["id", *(qn(f.column) for f in fields)])
            for start in range(0, len(pks), 1000):
                batch = pks[start : start + 1000]
                params: list = []
                for pk in batch:
                    params.append(pk)
                    params.extend(f.get_db_prep_save(updates[pk][f.name], connection) for f in fields)
                cursor.execute(
                    f"UPDATE {table} AS t SET {sets}, version = t.version + 1, updated_at = %s "  # noqa: S608
                    f"FROM (VALUES {', '.join([row_sql] * len(batch))}) AS v({value_names}) WHERE t.id = v.id",
                    [now, *params],
                )
        cursor.execute(
            f"INSERT INTO {qn(history._meta.db_table)} ({history_cols}) "  # noqa: S608
            f"SELECT {select_cols}, %s, '~', %s, NULL, %s, %s FROM {table} WHERE id = ANY(%s)",
            [now, user_id, attrs["change_channel"], attrs["change_ref"], list(updates)],
        )


#
# Rules configuration (admins)
#

RULE_ATTRS = ("strategy", "trust_order", "tie_break", "override_policy")


def survivorship_rules_list() -> list[dict]:
    """Every chosen field's rule as a dict (the admin page and the API)."""
    from crmhub.models import FieldDefinition

    labels = {f.name: f.label for f in FieldDefinition.objects.filter(name__in=CHOSEN_FIELDS)}
    return [
        {
            "field": name,
            "label": labels.get(name, name),
            "strategy": rule.strategy,
            "trust_order": list(rule.trust_order),
            "tie_break": rule.tie_break,
            "override_policy": rule.override_policy,
        }
        for name, rule in rules_load().items()
    ]


@transaction.atomic
def survivorship_rules_set(*, actor, changes: dict[str, dict], request=None) -> int:  # noqa: ANN001
    """Apply ``changes`` (field -> any of strategy, trust_order, tie_break, override_policy).

    Only admins may. Each changed rule writes one POLICY_CHANGE audit event with before and
    after; unchanged rules write nothing. Values already chosen stay until the customer is
    recomputed (the next change of its source records, or ``manage.py golden_recompute``).
    Returns the number of changed rules."""
    from django.core.exceptions import PermissionDenied, ValidationError

    from accounts.models import AuditEventKind
    from accounts.roles import Role, user_roles
    from accounts.services import audit_event_record
    from dedup.choices import OverridePolicy, SurvivorshipTieBreak
    from dedup.models import SurvivorshipRule

    if Role.ADMIN not in user_roles(actor):
        raise PermissionDenied(_("Only administrators may change survivorship rules."))
    codes = set(Source.objects.values_list("code", flat=True))
    allowed = {
        "strategy": SurvivorshipStrategy.values,
        "tie_break": SurvivorshipTieBreak.values,
        "override_policy": OverridePolicy.values,
    }
    current = {r["field"]: r for r in survivorship_rules_list()}
    changed = 0
    for name, spec in sorted(changes.items()):
        if name not in current:
            raise ValidationError(_("%(field)s is not a field survivorship chooses.") % {"field": name})
        unknown = set(spec) - set(RULE_ATTRS)
        if unknown:
            raise ValidationError(_("Unknown setting %(s)s.") % {"s": ", ".join(sorted(unknown))})
        for attr, choices in allowed.items():
            if attr in spec and spec[attr] not in choices:
                raise ValidationError(
                    _("%(field)s: %(value)s is not a valid %(attr)s (use one of %(choices)s).")
                    % {"field": name, "value": spec[attr], "attr": attr, "choices": ", ".join(choices)}
                )
        if "trust_order" in spec:
            order = spec["trust_order"]
            if isinstance(order, str):
                order = [c.strip() for c in order.replace(";", ",").split(",") if c.strip()]
            if not isinstance(order, list) or not all(isinstance(c, str) for c in order):
                raise ValidationError(_("%(field)s: the trust order is a list of source codes.") % {"field": name})
            missing = [c for c in order if c not in codes]
            if missing:
                raise ValidationError(
                    _("%(field)s: there is no source %(codes)s.") % {"field": name, "codes": ", ".join(missing)}
                )
            spec = {**spec, "trust_order": list(dict.fromkeys(order))}
        before = {k: current[name][k] for k in RULE_ATTRS}
        after = {**before, **spec}
        if after == before:
            continue
        SurvivorshipRule.objects.update_or_create(field=name, defaults={**after, "updated_by": actor})
        audit_event_record(
            kind=AuditEventKind.POLICY_CHANGE,
            user=actor,
            request=request,
            object_type="survivorship_rule",
            object_id=name,
            field=name,
            details={"before": before, "after": after},
        )
        changed += 1
    return changed
