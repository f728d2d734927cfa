"""Write operations of duplicate detection: merges and their undo, candidate decisions,
batch runs (in parts any worker can take) and real-time matching of arriving records."""

from __future__ import annotations

import gc
import json
import logging
import pickle
import time
import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import BooleanField, ExpressionWrapper, F, Q
from django.utils import timezone
from django.utils.translation import gettext as _
from simple_history.utils import bulk_update_with_history

from accounts.crypto import EncryptedTextField, decrypt, encrypt
from crmhub.choices import ChangeChannel, ChangeEventType, CustomerStatus
from crmhub.context import change_context, current_change_context
from crmhub.models import Customer, Interaction, Source, SourceRecord
from crmhub.outbox import Change, changes_record_bulk, feed_values
from dedup import engine
from dedup.choices import CandidateStatus, MergeOrigin, MergeStatus, PartStage, RunStatus
from dedup.clusters import candidates_touching, clusters_refresh, clusters_refresh_run
from dedup.features import build_features
from dedup.models import DedupRun, DedupRunPart, MatchCandidate, MatchRule, Merge
from dedup.survivorship import int_array

logger = logging.getLogger(__name__)


class MergeError(ValidationError):
    """A merge or an undo that cannot be done as asked (the message says why)."""


class MergeValueError(MergeError):
    """A value chosen for the survivor is not acceptable."""


class StaleVersionError(MergeError):
    """A customer changed since the caller read it (optimistic locking)."""


#
# Loading records
#

FEATURE_SOURCE_COLUMNS = (
    "id",
    "full_name",
    "family_name",
    "given_name",
    "gender",
    "birth_date",
    "mobile",
    "email",
    "id_number_hash",
    "member_no",
    "wechat_unionid",
    "postcode",
    "city",
    "address",
)


def customer_frame(*, ids: Iterable[int] | None = None, queryset=None) -> pd.DataFrame:  # noqa: ANN001
    """Active customers' matching columns as a DataFrame, read in one query (no decryption:
    the ID number is compared through its blind index)."""
    qs = queryset if queryset is not None else Customer.objects.active()
    if ids is not None:
        ids = sorted(ids)
        if not ids:
            qs = qs.none()
        elif connection.vendor == "postgresql":
            # One array parameter, not one placeholder per id (the guard's ~10⁵ ids at 1M).
            qs = qs.extra(where=[f"{Customer._meta.db_table}.id = ANY(%s)"], params=[ids])  # noqa: S610
        else:
            qs = qs.filter(pk__in=ids)
    qs = qs.annotate(
        id_flagged=ExpressionWrapper(Q(quality_flags__has_key="id_number"), output_field=BooleanField())
    ).order_by("id")
    if qs.query.is_empty():
        rows = []
    else:
        sql, sql_params = qs.values_list(*FEATURE_SOURCE_COLUMNS, "id_flagged").query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(sql, sql_params)
            rows = cursor.fetchall()
    df = pd.DataFrame.from_records(rows, columns=[*FEATURE_SOURCE_COLUMNS, "id_flagged"])
    df["id_valid"] = ~df["id_flagged"].fillna(False).astype(bool)
    return df.drop(columns=["id_flagged"])


def rule_get(name: str | None = None) -> MatchRule:
    if name:
        rule = MatchRule.objects.filter(name=name).first()
        if rule is None:
            known = ", ".join(MatchRule.objects.values_list("name", flat=True)) or "none"
            raise ValidationError(
                _("There is no match rule named %(name)s (known: %(known)s).") % {"name": repr(name), "known": known}
            )
        if not rule.is_active:
            raise ValidationError(_("The match rule %(name)s is not active.") % {"name": repr(name)})
        return rule
    if not MatchRule.objects.exists():
        match_rule_default_ensure()
    rule = (
        MatchRule.objects.filter(is_active=True, is_default=True).first()
        or MatchRule.objects.filter(is_active=True).first()
    )
    if rule is None:
        raise ValidationError(_("No active match rule exists; create one in the admin."))
    return rule


def match_rule_default_ensure() -> MatchRule:
    """The shipped default rule (also created by a data migration), recreated if missing."""
    from importlib import import_module

    spec = import_module("dedup.migrations.0003_default_match_rule").DEFAULT_RULE
    rule, _created = MatchRule.objects.get_or_create(
        name=spec["name"], defaults={k: v for k, v in spec.items() if k != "name"}
    )
    return rule


def _surviving_ids(ids: set[int]) -> dict[int, int]:
    """Each id → the id of the active customer it was (transitively) merged into."""
    result = {i: i for i in ids}
    pending = set(ids)
    hops = 0
    while pending and hops < 50:
        targets = dict(
            Customer.objects.filter(pk__in=pending, status=CustomerStatus.MERGED).values_list("pk", "merged_into_id")
        )
        if not targets:
            break
        for original, current in result.items():
            if current in targets:
                result[original] = targets[current]
        pending = set(targets.values())
        hops += 1
    return result


def rejected_pairs(ids: set[int] | None = None) -> set[tuple[int, int]]:
    """Pairs of *surviving* customers a steward said are different people (a rejection
    outlives merges: rejecting A~B keeps A apart from whatever B was merged into)."""
    qs = MatchCandidate.objects.filter(status=CandidateStatus.REJECTED)
    if ids is not None:
        qs = qs.filter(Q(left_id__in=ids) | Q(right_id__in=ids))
    raw = list(qs.values_list("left_id", "right_id"))
    if not raw:
        return set()
    survivors = _surviving_ids({i for pair in raw for i in pair})
    out = set()
    for a, b in raw:
        sa, sb = survivors[a], survivors[b]
        if sa != sb:
            out.add((min(sa, sb), max(sa, sb)))
    return out


#
# Merge and undo
#

SNAPSHOT_EXCLUDE = {"id", "updated_at"}


def _snapshot_fields() -> list:
    return [f for f in Customer._meta.concrete_fields if f.name not in SNAPSHOT_EXCLUDE]


class _SnapshotEncoder(DjangoJSONEncoder):
    """DjangoJSONEncoder, but datetimes keep their microseconds (an exact undo needs them)."""

    def default(self, o):  # noqa: ANN001, ANN201
        import datetime as dt

        if isinstance(o, dt.datetime):
            return o.isoformat()
        return super().default(o)


def _json_safe(value):  # noqa: ANN001, ANN202
    return json.loads(json.dumps(value, cls=_SnapshotEncoder))


def _customer_values(customer: Customer) -> dict:
    out = {}
    for f in _snapshot_fields():
        value = f.value_from_object(customer)
        if f.name == "id_number" and value:
            value = encrypt(value)  # the snapshot is JSON: keep the secret sealed
        out[f.attname] = value
    return json.loads(json.dumps(out, cls=_SnapshotEncoder))


def _restore_value(field, value):  # noqa: ANN001, ANN202
    if field.name == "id_number" and value:
        return decrypt(value)
    if value is None:
        return None
    if field.get_internal_type() in ("DateField", "DateTimeField"):
        return field.to_python(value)
    return value


def _survivor_values(survivor: Customer, others: list[Customer], values: dict, **kwargs) -> dict:  # noqa: ANN003
    """The values that change on the survivor of a merge (see ``_merge_plan``)."""
    return _merge_plan(survivor, others, values, **kwargs)[1]


def _merge_plan(
    survivor: Customer,
    others: list[Customer],
    values: dict,
    *,
    records: list[SourceRecord] | None = None,
    overrides: dict | None = None,
    rules: dict | None = None,
    sources=None,  # noqa: ANN001
    explain: bool = True,
) -> tuple[dict, dict, dict]:
    """Survivorship (dedup.survivorship) proposes a value per field from the customers' linked
    source records and held overrides; explicit ``values`` (the steward's choices) win; tags
    and custom values are united. Returns (proposals, what changes on the survivor, the
    steward's choices that differ from the proposal — to be remembered as overrides)."""
    from dedup.survivorship import golden_values_propose

    out: dict = {}
    proposals = golden_values_propose(
        [survivor, *others],
        survivor_id=survivor.pk,
        records=records,
        overrides=overrides,
        rules=rules,
        sources=sources,
        explain=explain,
    )
    for name, proposal in proposals.items():
        if proposal.value != getattr(survivor, name) and not (
            proposal.value in (None, "") and getattr(survivor, name) in (None, "")
        ):
            out[name] = proposal.value
    tags = list(survivor.tags or [])
    for other in others:
        tags += [t for t in (other.tags or []) if t not in tags]
    if tags != list(survivor.tags or []):
        out["tags"] = tags
    custom = dict(survivor.custom or {})
    for other in others:
        for key, value in (other.custom or {}).items():
            custom.setdefault(key, value)
    if custom != (survivor.custom or {}):
        out["custom"] = custom
    chosen: dict = {}
    for name, value in (values or {}).items():
        if name not in Customer.CORE_FIELDS:
            raise MergeValueError(_("%(name)s is not a field that can be chosen in a merge.") % {"name": repr(name)})
        field = Customer._meta.get_field(name)
        try:
            value = field.to_python(value) if value not in (None, "") else ("" if not field.null else None)
        except ValidationError as exc:
            raise MergeValueError(
                _("The value chosen for %(name)s is not valid: %(errors)s")
                % {"name": repr(name), "errors": "; ".join(exc.messages)}
            ) from exc
        if value != getattr(survivor, name):
            out[name] = value
        else:
            out.pop(name, None)
        if name in proposals and value != proposals[name].value:
            chosen[name] = value
    return proposals, out, chosen


def _merge_overrides(
    merge: Merge,
    survivor: Customer,
    proposals: dict,
    chosen: dict,
    records: list,
    overrides: dict,
    user,  # noqa: ANN001
) -> None:
    """After a merge the survivor remembers the steward's choices (values differing from the
    proposal) and carries the held overrides of merged customers whose values it took."""
    from dedup.models import FieldOverride
    from dedup.survivorship import field_overrides_record

    carried = []
    for name, proposal in proposals.items():
        if name in chosen or proposal.rule != "override" or proposal.customer_id == survivor.pk:
            continue
        o = overrides[proposal.customer_id][name]
        carried.append(
            FieldOverride(
                customer_id=survivor.pk,
                field=name,
                value=o.value,
                basis=o.basis,
                set_by_id=o.set_by_id,
                set_at=o.set_at,
                channel=ChangeChannel.MERGE,
                ref=f"merge:{merge.pk}",
            )
        )
    if carried:
        FieldOverride.objects.filter(customer_id=survivor.pk, field__in=[o.field for o in carried]).delete()
        FieldOverride.objects.bulk_create(carried)
    if chosen:
        field_overrides_record(
            customer_id=survivor.pk,
            values=chosen,
            user=user,
            channel=ChangeChannel.MERGE,
            ref=f"merge:{merge.pk}",
            records=records,
        )


@transaction.atomic
def customers_merge(
    *,
    customers: list[int] | list[Customer],
    survivor: int | Customer,
    values: dict | None = None,
    acting_user=None,
    note: str = "",
    origin: str = MergeOrigin.STEWARD,
    run: DedupRun | None = None,  # noqa: ANN001
    expected_versions: dict[int, int] | None = None,
    candidate: MatchCandidate | None = None,
) -> Merge:
    """Merge ``customers`` into ``survivor``: move their source records and interactions to
    the survivor, tombstone them (status merged, ``merged_into``), apply the chosen values,
    bump every version, and keep a snapshot from which ``merge_undo`` restores all of it."""
    ids = sorted({c.pk if isinstance(c, Customer) else int(c) for c in customers})
    survivor_id = survivor.pk if isinstance(survivor, Customer) else int(survivor)
    if survivor_id not in ids:
        ids = sorted({*ids, survivor_id})
    if len(ids) < 2:
        raise MergeError(_("A merge needs at least two different customers."))
    locked = {c.pk: c for c in Customer.objects.select_for_update().filter(pk__in=ids).order_by("pk")}
    missing = [i for i in ids if i not in locked]
    if missing:
        raise MergeError(_("No customer with id %(ids)s.") % {"ids": ", ".join(map(str, missing))})
    inactive = [i for i in ids if locked[i].status != CustomerStatus.ACTIVE]
    if inactive:
        raise MergeError(
            _("Customer %(ids)s is not active (already merged or erased); merge its survivor.")
            % {"ids": ", ".join(map(str, inactive))}
        )
    for cid, version in (expected_versions or {}).items():
        if int(cid) in locked and locked[int(cid)].version != int(version):
            raise StaleVersionError(
                _("Customer %(id)s changed since it was read (version %(now)s, not %(read)s); reload and try again.")
                % {"id": cid, "now": locked[int(cid)].version, "read": version}
            )
    target = locked[survivor_id]
    others = [locked[i] for i in ids if i != survivor_id]
    other_ids = [c.pk for c in others]

    records = list(SourceRecord.objects.select_for_update().filter(customer_id__in=ids).order_by("pk"))
    interactions = list(Interaction.objects.select_for_update().filter(customer_id__in=ids).order_by("pk"))
    from dedup.survivorship import overrides_for, overrides_snapshot

    before = {
        "customers": {str(c.pk): _customer_values(c) for c in locked.values()},
        "source_records": {str(r.pk): r.customer_id for r in records},
        "interactions": {str(i.pk): i.customer_id for i in interactions},
        "overrides": _json_safe(overrides_snapshot([survivor_id]).get(survivor_id, [])),
    }
    overrides = overrides_for(ids)
    proposals, new_values, chosen = _merge_plan(target, others, values or {}, records=records, overrides=overrides)
    merge = Merge.objects.create(
        survivor=target,
        merged_ids=other_ids,
        values=json.loads(json.dumps(values or {}, cls=DjangoJSONEncoder)),
        before=before,
        origin=origin,
        run=run,
        note=note,
        acting_user=acting_user,
    )
    ctx = current_change_context()
    ref = ctx.ref if ctx.channel == ChangeChannel.MERGE and ctx.ref else f"merge:{merge.pk}"
    with change_context(channel=ChangeChannel.MERGE, ref=ref, user=acting_user or ctx.user):
        for name, value in new_values.items():
            setattr(target, name, value)
        if "full_name" in new_values and "name_pinyin" not in new_values:
            from dedup.names import pinyin

            target.name_pinyin = pinyin(target.full_name) or target.name_pinyin
        target.version += 1
        target.save()
        for other in others:
            other.status = CustomerStatus.MERGED
            other.merged_into = target
            other.version += 1
            other.save()
        moved_records = [r for r in records if r.customer_id != survivor_id]
        for r in moved_records:
            r.customer_id = survivor_id
        moved_interactions = [i for i in interactions if i.customer_id != survivor_id]
        for i in moved_interactions:
            i.customer_id = survivor_id
        attrs = {"change_channel": ChangeChannel.MERGE, "change_ref": ref[:200]}
        user = acting_user or ctx.user
        if moved_records:
            bulk_update_with_history(
                moved_records, SourceRecord, ["customer"], default_user=user, custom_historical_attrs=attrs
            )
        if moved_interactions:
            bulk_update_with_history(
                moved_interactions, Interaction, ["customer"], default_user=user, custom_historical_attrs=attrs
            )
    target.refresh_from_db()
    merge.after = {
        "survivor": _customer_values(target),
        "versions": {str(c.pk): c.version for c in [target, *others]},
    }
    merge.save(update_fields=["after"])
    _merge_overrides(merge, target, proposals, chosen, records, overrides, acting_user or ctx.user)
    _announce_merges([(target.pk, other_ids, feed_values(new_values))])
    # Open candidates about the merged records are moot now; the next run re-proposes what is left.
    open_qs = MatchCandidate.objects.filter(status=CandidateStatus.PENDING).filter(
        Q(left_id__in=ids) | Q(right_id__in=ids)
    )
    if candidate is not None:
        open_qs = open_qs.exclude(pk=candidate.pk)
    open_qs.filter(left_id__in=ids, right_id__in=ids).update(
        status=CandidateStatus.SUPERSEDED, merge=merge, decided_at=timezone.now()
    )
    open_qs.filter(Q(left_id__in=other_ids) | Q(right_id__in=other_ids)).update(status=CandidateStatus.SUPERSEDED)
    clusters_refresh(ids)
    return merge


def _announce_merges(merges: list[tuple[int, list[int], dict]]) -> None:
    """Change-feed events of merges, in the merge's transaction: the survivor's (with the
    values chosen for it) and each tombstone's (pointing at the survivor)."""
    changes = []
    for survivor_id, merged_ids, values in merges:
        survivor_data = {**values, "_merged_ids": merged_ids}
        changes.append(Change(ChangeEventType.MERGED, survivor_id, sorted(values), survivor_data))
        changes += [Change(ChangeEventType.MERGED, pk, [], {"_merged_into": survivor_id}) for pk in merged_ids]
    changes_record_bulk(changes)


def _set_based_update(model, objs: list, fields: list[str]) -> None:  # noqa: ANN001
    """``bulk_update`` without its per-row CASE expressions (slow for thousands of rows): on
    PostgreSQL one ``UPDATE ... FROM unnest(arrays)`` (one array parameter per column, so the
    statement stays a few hundred bytes whatever the number of rows); elsewhere bulk_update."""
    if not objs:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_update(objs, fields, batch_size=500)
        return
    qn = connection.ops.quote_name
    concrete = [model._meta.get_field(f) for f in fields]
    pk = model._meta.pk
    arrays = [[obj.pk for obj in objs]]
    casts = [_array_type(pk)]
    for f in concrete:
        arrays.append([f.get_db_prep_save(getattr(obj, f.attname), connection) for obj in objs])
        casts.append(_array_type(f))
    names = ["pk_", *(f"c{k}" for k in range(len(concrete)))]
    sets = ", ".join(f"{qn(f.column)} = v.c{k}" for k, f in enumerate(concrete))
    unnest = ", ".join(f"%s::{c}" for c in casts)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {qn(model._meta.db_table)} AS t SET {sets} FROM unnest({unnest}) AS v({', '.join(names)}) "  # noqa: S608
            f"WHERE t.{qn(pk.column)} = v.pk_",
            arrays,
        )


def _array_type(field) -> str:  # noqa: ANN001
    db_type = field.db_type(connection) if not field.is_relation else field.target_field.rel_db_type(connection)
    return {"bigserial": "bigint", "serial": "integer"}.get(db_type, db_type) + "[]"


def _history_insert_select(model, ids: list[int], *, user, attrs: dict) -> None:  # noqa: ANN001
    """History rows ("~") of rows just updated, copied from the rows themselves inside
    PostgreSQL (``INSERT ... SELECT``): no model instances, no values through Python."""
    if not ids:
        return
    qn = connection.ops.quote_name
    history = model.history.model
    tracked = [f.column for f in history.tracked_fields]
    extra = {
        "history_date": timezone.now(),
        "history_user_id": getattr(user, "pk", None),
        "history_change_reason": None,
        "history_type": "~",
        **attrs,
    }
    known = set(tracked) | set(extra) | {history._meta.pk.column}
    unknown = [f.column for f in history._meta.concrete_fields if f.column not in known]
    if unknown:  # a history column nobody fills: refuse rather than write incomplete history
        raise RuntimeError(f"history of {model.__name__}: no value for {', '.join(unknown)}")
    columns = ", ".join(qn(c) for c in [*tracked, *extra])
    selected = ", ".join([*(f"t.{qn(c)}" for c in tracked), *(["%s"] * len(extra))])
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {qn(history._meta.db_table)} ({columns}) SELECT {selected} "  # noqa: S608
            f"FROM {qn(model._meta.db_table)} AS t WHERE t.{qn(model._meta.pk.column)} = ANY(%s::bigint[])",
            [*extra.values(), int_array(ids)],
        )


def _move_rows(model, target_of: dict[int, int], *, user, attrs: dict) -> dict[int, int]:  # noqa: ANN001
    """Point the rows (source records, interactions) of merged-away customers at their
    survivor, with history. Returns row pk → the customer it belonged to before."""
    if not target_of:
        return {}
    if connection.vendor == "postgresql":
        qn = connection.ops.quote_name
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {qn(model._meta.db_table)} AS r SET customer_id = v.target "  # noqa: S608
                "FROM unnest(%s::bigint[], %s::bigint[]) AS v(old, target) WHERE r.customer_id = v.old "
                # Said twice: the ANY gives the planner the index path; without it the join
                # read the whole table once per chunk (a hash join), quadratic over a run.
                "AND r.customer_id = ANY(%s::bigint[]) RETURNING r.id, v.old",
                [int_array(target_of), int_array(target_of.values()), int_array(target_of)],
            )
            moved = dict(cursor.fetchall())
        _history_insert_select(model, sorted(moved), user=user, attrs=attrs)
        return moved
    rows = list(model.objects.select_for_update().filter(customer_id__in=list(target_of)).order_by("pk"))
    moved = {r.pk: r.customer_id for r in rows}
    for r in rows:
        r.customer_id = target_of[r.customer_id]
    _update_with_history(model, rows, ["customer"], user=user, attrs=attrs)
    return moved


def _copy_objects(model, objs: list, *, with_pk: bool = False) -> None:  # noqa: ANN001
    """Insert unsaved model instances with PostgreSQL COPY (no per-value quoting in Python);
    ``bulk_create`` elsewhere. With ``with_pk`` the instances carry their ids already."""
    if not objs:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_create(objs, batch_size=1000)
        return
    fields = [f for f in model._meta.concrete_fields if with_pk or not f.primary_key]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    connection.ensure_connection()
    with connection.connection.cursor() as cursor:
        with cursor.copy(f"COPY {connection.ops.quote_name(model._meta.db_table)} ({columns}) FROM STDIN") as copy:
            converters = [_copy_converter(f) for f in fields]
            for obj in objs:
                copy.write_row([convert(obj) for convert in converters])


def _copy_converter(field):  # noqa: ANN001, ANN202
    """How one field's value goes into COPY: plain attribute values as they are (psycopg adapts
    str, int, date, bool, None), and Django's preparation only where it matters (JSON,
    encryption, auto timestamps) — per-field preparation of every value costs more than COPY."""
    from django.db.models import JSONField

    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return lambda obj: field.get_db_prep_save(field.pre_save(obj, True), connection)
    if isinstance(field, (JSONField, EncryptedTextField)):
        return lambda obj: field.get_db_prep_save(getattr(obj, field.attname), connection)
    attname = field.attname
    return lambda obj: getattr(obj, attname)


def _allocate_ids(model, n: int) -> list[int]:  # noqa: ANN001
    if connection.vendor != "postgresql" or n == 0:
        return []
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [table, n])
        return [row[0] for row in cursor.fetchall()]


def _history_objects(model, objs: list, *, user, attrs: dict) -> list:  # noqa: ANN001
    """Historical rows of an update, as simple-history's bulk_history_create builds them."""
    history_model = model.history.model
    now = timezone.now()
    user_id = getattr(user, "pk", None)
    return [
        history_model(
            history_date=now,
            history_user_id=user_id,
            history_change_reason=None,
            history_type="~",
            **{f.attname: getattr(obj, f.attname) for f in history_model.tracked_fields},
            **attrs,
        )
        for obj in objs
    ]


def _update_with_history(model, objs: list, fields: list[str], *, user, attrs: dict) -> None:  # noqa: ANN001
    if not objs:
        return
    _set_based_update(model, objs, fields)
    if connection.vendor == "postgresql":
        _history_insert_select(model, [o.pk for o in objs], user=user, attrs=attrs)
    else:
        _copy_objects(model.history.model, _history_objects(model, objs, user=user, attrs=attrs))


def _snap(field, value):  # noqa: ANN001, ANN202
    """One value as ``_customer_values`` keeps it in a snapshot (JSON-ready, secrets sealed)."""
    import datetime as dt

    if field.name == "id_number" and value:
        return encrypt(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, (list, dict)):
        return json.loads(json.dumps(value, cls=_SnapshotEncoder))
    return value


MERGE_CHUNK = 2000
_DERIVED = {"name_pinyin", "id_number_hash"}


def customers_merge_many(
    *,
    clusters: list[list[int]],
    run: DedupRun | None = None,
    note: str = "",
    origin: str = MergeOrigin.AUTO,
    processes: int = 1,
    stats: dict | None = None,
) -> dict[int, int]:
    """Many merges at once, set-based (the batch run's automatic links): the same effects and
    history as ``customers_merge`` per cluster (survivor = first id), in a few queries per
    chunk of clusters instead of a few per cluster. Clusters with a customer no longer active
    are skipped. Returns survivor id → merge id.

    Chunks are independent transactions over disjoint customers, so with ``processes`` > 1
    (PostgreSQL, outside any transaction: the inline batch run) they are merged by that many
    processes, each with its own database connection; their CPU seconds (and their
    PostgreSQL backends', when readable) are added to ``stats``.

    The snapshot is lighter than ``customers_merge``'s and restores just as exactly: it holds
    what the merge changed — the survivor's changed fields, each tombstone's status, target
    and version, the moved rows' owners — since everything else the merge left as it was
    (``merge_undo`` restores the fields a snapshot holds)."""
    from dedup.survivorship import SourceIndex, rules_load

    done: dict[int, int] = {}
    rules, sources = rules_load(), SourceIndex()
    chunks = [clusters[start : start + MERGE_CHUNK] for start in range(0, len(clusters), MERGE_CHUNK)]
    if processes > 1 and len(chunks) > 1 and connection.vendor == "postgresql" and not connection.in_atomic_block:
        return _merge_chunks_in_processes(chunks, run, note, origin, rules, sources, processes, stats)
    for chunk in chunks:
        done.update(_merge_chunk(chunk, run, note, origin, rules, sources))
    return done


def _merge_chunks_in_processes(  # noqa: PLR0913
    chunks: list,
    run,  # noqa: ANN001
    note: str,
    origin: str,
    rules: dict,
    sources,  # noqa: ANN001
    processes: int,
    stats: dict | None,
) -> dict:
    """``_merge_chunk`` over a pool of forked processes, each with its own database connection
    (see ``_forget_inherited_connections``), under the caller's change context."""
    ctx = current_change_context()
    jobs = [(chunk, run, note, origin, rules, sources, ctx.channel, ctx.ref, ctx.user) for chunk in chunks]
    done: dict[int, int] = {}
    # The parent holds the run's scores (GBs at 1M records): frozen, the children's garbage
    # collector never walks them, so their pages stay shared instead of being copied.
    gc.freeze()
    try:
        _merge_pool_run(jobs, processes, done, stats)
    finally:
        gc.unfreeze()
    return done


def _merge_pool_run(jobs: list, processes: int, done: dict, stats: dict | None) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(
        max_workers=processes,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_forget_inherited_connections,
    ) as pool:
        for merged, cpu, db_cpu, peak_rss_mb in pool.map(_merge_chunk_in_child, jobs):
            done.update(merged)
            if stats is not None:
                stats["child_cpu_seconds"] = stats.get("child_cpu_seconds", 0.0) + cpu
                stats["child_peak_rss_mb"] = max(stats.get("child_peak_rss_mb", 0.0), peak_rss_mb)
                if db_cpu is not None:
                    stats["child_db_cpu_seconds"] = stats.get("child_db_cpu_seconds", 0.0) + db_cpu


_INHERITED: list = []


def _forget_inherited_connections() -> None:
    """In a forked child: leave the parent's database connections alone — not used, not
    closed (closing would end the parent's session on the shared socket) and kept referenced
    so no finaliser closes them; the pool's children leave through ``os._exit`` — and let
    Django open the child's own."""
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        if conn.connection is not None:
            _INHERITED.append(conn.connection)
            conn.connection = None


def _merge_chunk_in_child(job: tuple) -> tuple[dict[int, int], float, float | None, float]:
    """One chunk in a pool's child: its merges, the CPU seconds it cost (the child's and its
    PostgreSQL backend's) and the child's peak RSS in MB (shared pages included)."""
    import resource

    chunk, run, note, origin, rules, sources, channel, ref, user = job
    cpu, db_cpu = time.process_time(), db_backend_cpu_seconds()
    with change_context(channel=channel, ref=ref, user=user):
        merged = _merge_chunk(chunk, run, note, origin, rules, sources)
    db_after = db_backend_cpu_seconds()
    return (
        merged,
        time.process_time() - cpu,
        None if db_cpu is None or db_after is None else db_after - db_cpu,
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )


def db_backend_cpu_seconds(pid: int | None = None) -> float | None:
    """CPU seconds (user + system) of this connection's PostgreSQL backend (or of backend
    ``pid``), read from /proc when the server runs on this machine (benchmarks); None otherwise."""
    import os
    from pathlib import Path

    if connection.vendor != "postgresql":
        return None
    if pid is None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _merge_read_columns() -> tuple[str, ...]:
    from dedup.survivorship import CHOSEN_FIELDS

    return (
        "id",
        "status",
        "merged_into_id",
        "version",
        "tags",
        "custom",
        "name_pinyin",
        "id_number_hash",
        *CHOSEN_FIELDS,
    )


@transaction.atomic
def _merge_chunk(
    clusters: list[list[int]],
    run: DedupRun | None,
    note: str,
    origin: str,
    rules: dict,
    sources,  # noqa: ANN001
) -> dict[int, int]:
    """One chunk of ``customers_merge_many``, over plain rows (no model instances): the
    customers and their source records locked and read once, survivorship for all clusters
    in one call, one UPDATE for the tombstones and one for the survivors, one history copy
    for both, the moved rows by ``UPDATE ... RETURNING``, Merge rows and feed events by COPY."""
    from accounts.crypto import blind_index
    from dedup.names import pinyin
    from dedup.survivorship import (
        RECORD_COLUMNS,
        _any,
        _record_from_row,
        golden_values_choose_many,
        overrides_for,
        overrides_snapshot,
    )

    ids = sorted({i for members in clusters for i in members})
    columns = _merge_read_columns()
    locked = {
        row[0]: dict(zip(columns, row, strict=True))
        for row in _any(Customer.objects.select_for_update(), "id", ids).order_by("pk").values_list(*columns)
    }
    # The first id of each cluster survives; the others follow in id order.
    clusters = [
        [m[0], *sorted(set(m[1:]) - {m[0]})]
        for m in clusters
        if len(set(m)) >= 2 and all(i in locked and locked[i]["status"] == CustomerStatus.ACTIVE for i in m)
    ]
    if not clusters:
        return {}
    ids = sorted({i for members in clusters for i in members})
    owner_of = {i: members[0] for members in clusters for i in members}
    # Survivorship reads the cluster's source records (locked here; moved below in SQL).
    records_by: dict[int, list] = {}
    for row in (
        _any(SourceRecord.objects.select_for_update(), "customer", ids).order_by("pk").values_list(*RECORD_COLUMNS)
    ):
        records_by.setdefault(owner_of[row[1]], []).append(_record_from_row(row))

    ctx = current_change_context()
    user = ctx.user
    ref = ctx.ref if ctx.channel == ChangeChannel.MERGE and ctx.ref else (f"dedup_run:{run.pk}" if run else "merge")
    fields = {f.attname: f for f in _snapshot_fields()}
    overrides = overrides_for(ids)
    override_rows = overrides_snapshot(ids) if overrides else {}
    choices = golden_values_choose_many(clusters, locked, records_by, overrides=overrides, rules=rules, sources=sources)
    now = timezone.now()
    merges, announced = [], []
    survivor_changes: dict[int, dict[str, object]] = {}
    target_of: dict[int, int] = {}
    for members, (values, _origins) in zip(clusters, choices, strict=True):
        target = locked[members[0]]
        others = [locked[i] for i in members[1:]]
        new_values = {
            name: value
            for name, value in values.items()
            if value != target[name] and not (value in (None, "") and target[name] in (None, ""))
        }
        # Tags and custom values are united, as in ``_merge_plan``.
        tags = list(target["tags"] or [])
        for other in others:
            tags += [t for t in (other["tags"] or []) if t not in tags]
        if tags != list(target["tags"] or []):
            new_values["tags"] = tags
        custom = dict(target["custom"] or {})
        for other in others:
            for key, value in (other["custom"] or {}).items():
                custom.setdefault(key, value)
        if custom != (target["custom"] or {}):
            new_values["custom"] = custom
        if "full_name" in new_values:
            new_values["name_pinyin"] = pinyin(new_values["full_name"]) or target["name_pinyin"]
        if "id_number" in new_values:
            new_values["id_number_hash"] = blind_index(new_values["id_number"])
        before_target, after_target = {}, {}
        for name, value in new_values.items():
            old = target[name]
            if old == value:
                continue
            before_target[name] = _snap(fields[name], old)
            after_target[name] = _snap(fields[name], value)
        survivor_changes[target["id"]] = {name: new_values[name] for name in after_target}
        before = {
            "customers": {str(target["id"]): {**before_target, "version": target["version"]}},
            "overrides": _json_safe(override_rows[members[0]]) if members[0] in override_rows else [],
            "source_records": {},
            "interactions": {},
        }
        versions = {str(target["id"]): target["version"] + 1}
        for other in others:
            before["customers"][str(other["id"])] = {
                "status": other["status"],
                "merged_into_id": other["merged_into_id"],
                "version": other["version"],
            }
            versions[str(other["id"])] = other["version"] + 1
            target_of[other["id"]] = target["id"]
        merges.append(_MergeRow(target["id"], members[1:], before, {"survivor": after_target, "versions": versions}))
        # The feed says what the survivor's values became (derived keys are internal).
        shown = {name: value for name, value in survivor_changes[target["id"]].items() if name not in _DERIVED}
        announced.append((target["id"], members[1:], feed_values(shown)))
    attrs = {"change_channel": ChangeChannel.MERGE, "change_ref": ref[:200]}
    with_history = {"user": user, "attrs": attrs}
    _customers_merge_write(target_of, survivor_changes, now=now, **with_history)
    moved_records = _move_rows(SourceRecord, target_of, **with_history)
    moved_interactions = _move_rows(Interaction, target_of, **with_history)
    merge_of = {m.survivor_id: m for m in merges}
    for moved, key in ((moved_records, "source_records"), (moved_interactions, "interactions")):
        for pk, owner in sorted(moved.items()):
            merge_of[target_of[owner]].before[key][str(pk)] = owner
    _merges_insert(merges, origin=origin, run=run, note=note)
    if overrides:
        _merge_overrides_carry(merges, choices, overrides, run)
    _announce_merges(announced)
    _candidates_supersede(list(target_of))
    if any(m.pk is None for m in merges):
        # Backends that do not return ids from bulk inserts: read them back.
        by_survivor = dict(
            Merge.objects.filter(run=run, survivor_id__in=[m.survivor_id for m in merges])
            .order_by("pk")
            .values_list("survivor_id", "pk")
        )
        return {m.survivor_id: by_survivor[m.survivor_id] for m in merges}
    return {m.survivor_id: m.pk for m in merges}


class _MergeRow:
    """What one batch merge's ``Merge`` row says that its chunk's others do not."""

    __slots__ = ("after", "before", "merged_ids", "pk", "survivor_id")

    def __init__(self, survivor_id: int, merged_ids: list[int], before: dict, after: dict) -> None:
        self.survivor_id, self.merged_ids, self.before, self.after = survivor_id, merged_ids, before, after
        self.pk: int | None = None


def _merges_insert(merges: list[_MergeRow], *, origin: str, run: DedupRun | None, note: str) -> None:
    """The chunk's ``Merge`` rows (their ids set on ``merges``). PostgreSQL: ids drawn from the
    sequence and the rows streamed by COPY as plain tuples — building a model instance per
    merge and preparing its fields through Django cost more than the COPY itself."""
    if not merges:
        return
    ids = _allocate_ids(Merge, len(merges))
    if not ids:
        objs = [
            Merge(
                survivor_id=m.survivor_id,
                merged_ids=m.merged_ids,
                values={},
                before=m.before,
                origin=origin,
                run=run,
                note=note,
                acting_user=None,
                after=m.after,
            )
            for m in merges
        ]
        Merge.objects.bulk_create(objs, batch_size=500)
        for m, obj in zip(merges, objs, strict=True):
            m.pk = obj.pk
        return
    created = timezone.now()
    run_id = run.pk if run else None
    # Every column, as Merge(...) with these values and the model's defaults would write it.
    fixed = {
        "values": "{}",
        "origin": origin,
        "status": MergeStatus.DONE,
        "run_id": run_id,
        "note": note,
        "acting_user_id": None,
        "created_at": created,
        "undone_by_id": None,
        "undone_at": None,
        "undo_report": "{}",
    }
    columns = [f.column for f in Merge._meta.concrete_fields]
    per_row = {"id", "survivor_id", "merged_ids", "before", "after"}
    if set(columns) != per_row | set(fixed):  # a new column: refuse rather than write it wrong
        raise RuntimeError(f"Merge columns changed: {sorted(set(columns) ^ (per_row | set(fixed)))}")
    dumps = json.JSONEncoder().encode
    with connection.cursor() as cursor:
        qn = connection.ops.quote_name
        with cursor.copy(f"COPY {qn(Merge._meta.db_table)} ({', '.join(qn(c) for c in columns)}) FROM STDIN") as copy:
            for m, pk in zip(merges, ids, strict=True):
                m.pk = pk
                row = {
                    **fixed,
                    "id": pk,
                    "survivor_id": m.survivor_id,
                    "merged_ids": dumps(m.merged_ids),
                    "before": dumps(m.before),
                    "after": dumps(m.after),
                }
                copy.write_row([row[c] for c in columns])


def _candidates_supersede(merged_away: list[int]) -> None:
    """Pending candidates of merged-away customers are superseded. Their rows are locked in
    id order first: chunks merged side by side may share a candidate (one side in each), and
    locking in one order makes them wait for each other instead of deadlocking."""
    pending = candidates_touching(MatchCandidate.objects.filter(status=CandidateStatus.PENDING), merged_away)
    if connection.vendor == "postgresql":
        pks = list(pending.order_by("pk").select_for_update().values_list("pk", flat=True))
        if pks:
            from dedup.survivorship import _any

            _any(MatchCandidate.objects.all(), "id", pks).update(status=CandidateStatus.SUPERSEDED)
        return
    pending.update(status=CandidateStatus.SUPERSEDED)


def _merge_overrides_carry(merges: list[Merge], choices: list, overrides: dict, run: DedupRun | None) -> None:
    """The survivors carry the held overrides of merged customers whose values they took
    (``_merge_overrides`` for a batch: no steward choices there)."""
    from dedup.models import FieldOverride

    carried = []
    for merge, (_values, origins) in zip(merges, choices, strict=True):
        if merge.pk is None:
            merge.pk = Merge.objects.filter(run=run, survivor_id=merge.survivor_id).order_by("-pk").first().pk
        for name, customer_id in origins.items():
            if customer_id == merge.survivor_id:
                continue
            o = overrides[customer_id][name]
            carried.append(
                FieldOverride(
                    customer_id=merge.survivor_id,
                    field=name,
                    value=o.value,
                    basis=o.basis,
                    set_by_id=o.set_by_id,
                    set_at=o.set_at,
                    channel=ChangeChannel.MERGE,
                    ref=f"merge:{merge.pk}",
                )
            )
    if carried:
        replaced = Q()
        for o in carried:
            replaced |= Q(customer_id=o.customer_id, field=o.field)
        FieldOverride.objects.filter(replaced).delete()
        FieldOverride.objects.bulk_create(carried)


def _customers_merge_write(
    target_of: dict[int, int],
    survivor_changes: dict[int, dict[str, object]],
    *,
    now,  # noqa: ANN001
    user,  # noqa: ANN001
    attrs: dict,
) -> None:
    """Tombstone the merged-away customers and write the survivors' new values (every one's
    version bumped), with one history row each. PostgreSQL: one UPDATE per kind over arrays
    — the survivors' changed columns with a changed-flag per column, so one statement serves
    survivors that changed different fields — and one ``INSERT ... SELECT`` of history."""
    ids = sorted([*target_of, *survivor_changes])
    if connection.vendor != "postgresql":
        for pk, target in target_of.items():
            Customer.objects.filter(pk=pk).update(
                status=CustomerStatus.MERGED, merged_into_id=target, version=F("version") + 1, updated_at=now
            )
        for pk, changes in survivor_changes.items():
            Customer.objects.filter(pk=pk).update(**changes, version=F("version") + 1, updated_at=now)
        rows = list(Customer.objects.filter(pk__in=ids).order_by("pk"))
        _copy_objects(Customer.history.model, _history_objects(Customer, rows, user=user, attrs=attrs))
        return
    qn = connection.ops.quote_name
    table = qn(Customer._meta.db_table)
    with connection.cursor() as cursor:
        if target_of:
            cursor.execute(
                f"UPDATE {table} AS t SET status = %s, merged_into_id = v.target, version = t.version + 1, "  # noqa: S608
                "updated_at = %s FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, target) WHERE t.id = v.id "
                "AND t.id = ANY(%s::bigint[])",  # the index path (see _move_rows)
                [CustomerStatus.MERGED, now, int_array(target_of), int_array(target_of.values()), int_array(target_of)],
            )
        if survivor_changes:
            # One row per survivor as JSON (jsonb_to_recordset): a changed flag and the new
            # value of each column it changed; a column it keeps reads NULL for both. One
            # json.dumps of the chunk instead of psycopg adapting two arrays per column.
            changed = sorted({name for changes in survivor_changes.values() for name in changes})
            fields = [Customer._meta.get_field(name) for name in changed]
            rows = []
            for pk, changes in survivor_changes.items():
                row: dict[str, object] = {"id": pk}
                for k, field in enumerate(fields):
                    if field.name in changes:
                        row[f"f{k}"] = True
                        row[f"c{k}"] = _json_column_value(field, changes[field.name])
                rows.append(row)
            sets = ["version = t.version + 1", "updated_at = %s"]
            types = ["id bigint"]
            for k, field in enumerate(fields):
                column = qn(field.column)
                sets.append(f"{column} = CASE WHEN v.f{k} THEN v.c{k} ELSE t.{column} END")
                types += [f"f{k} boolean", f"c{k} {field.db_type(connection)}"]
            cursor.execute(
                f"UPDATE {table} AS t SET {', '.join(sets)} "  # noqa: S608
                f"FROM jsonb_to_recordset(%s::jsonb) AS v({', '.join(types)}) "
                "WHERE t.id = v.id AND t.id = ANY(%s::bigint[])",  # the index path (see _move_rows)
                [now, json.dumps(rows, separators=(",", ":")), int_array(survivor_changes)],
            )
    _history_insert_select(Customer, ids, user=user, attrs=attrs)


def _json_column_value(field, value):  # noqa: ANN001, ANN202
    """A customer column's new value inside the survivors' JSON rows: what Django would write
    (secrets sealed), dates as ISO text; JSON columns as the value itself."""
    from django.db.models import JSONField

    if isinstance(field, JSONField):
        return value
    value = field.get_db_prep_save(value, connection)
    return value.isoformat() if hasattr(value, "isoformat") else value


@transaction.atomic
def merge_undo(*, merge: Merge, acting_user=None, note: str = "") -> dict:  # noqa: ANN001
    """Restore what ``merge`` changed. Rows changed since the merge keep their later
    changes: a survivor field edited afterwards keeps its new value, a source record or
    interaction that moved on stays where it is, and each such case is reported."""
    merge = Merge.objects.select_for_update().get(pk=merge.pk)
    if merge.status == MergeStatus.UNDONE:
        raise MergeError(_("Merge %(id)s was already undone.") % {"id": merge.pk})
    ids = [int(i) for i in merge.before["customers"]]
    locked = {c.pk: c for c in Customer.objects.select_for_update().filter(pk__in=ids).order_by("pk")}
    survivor = locked[merge.survivor_id]
    if survivor.status != CustomerStatus.ACTIVE:
        raise MergeError(
            _("Customer %(id)s was merged again afterwards (into %(target)s); undo that later merge first.")
            % {"id": survivor.pk, "target": survivor.merged_into_id}
        )
    for cid in merge.merged_ids:
        c = locked[int(cid)]
        if c.status != CustomerStatus.MERGED or c.merged_into_id != survivor.pk:
            raise MergeError(
                _("Customer %(id)s is no longer merged into %(survivor)s; this merge cannot be undone.")
                % {"id": cid, "survivor": survivor.pk}
            )
    from dedup.models import FieldOverride
    from dedup.survivorship import golden_record_recompute, overrides_restore

    conflicts: dict = {"fields": [], "source_records": [], "interactions": []}
    fields = {f.attname: f for f in _snapshot_fields()}
    after = merge.after.get("survivor", {})
    current_survivor = _customer_values(survivor)
    own_ref = f"merge:{merge.pk}"
    # A person's choice made after the merge is a later change even if the value is the same.
    later_choices = set(
        FieldOverride.objects.filter(customer_id=survivor.pk, set_at__gt=merge.created_at)
        .exclude(ref=own_ref)
        .values_list("field", flat=True)
    )
    with change_context(channel=ChangeChannel.UNMERGE, ref=own_ref, user=acting_user):
        for cid_str, values in merge.before["customers"].items():
            customer = locked[int(cid_str)]
            is_survivor = customer.pk == survivor.pk
            for attname, old in values.items():
                if attname in ("version",):
                    continue
                field = fields[attname]
                if is_survivor and attname in after:
                    unchanged_since = _same(field, current_survivor.get(attname), after.get(attname))
                    if not unchanged_since or field.name in later_choices:
                        conflicts["fields"].append(field.name)
                        continue
                setattr(customer, attname, _restore_value(field, old))
            customer.version = max(customer.version, int(values.get("version", 0))) + 1
            customer.save()
        # The survivor's overrides go back to what they were, except on fields changed since.
        touched = set(FieldOverride.objects.filter(customer_id=survivor.pk).values_list("field", flat=True))
        snapshot = merge.before.get("overrides", [])
        touched |= {r["field"] for r in snapshot}
        overrides_restore(survivor.pk, snapshot, touched - set(conflicts["fields"]))
        attrs = {"change_channel": ChangeChannel.UNMERGE, "change_ref": own_ref}
        records = _give_back(
            SourceRecord,
            merge.before["source_records"],
            survivor.pk,
            conflicts["source_records"],
            user=acting_user,
            attrs=attrs,
        )
        interactions = _give_back(
            Interaction,
            merge.before["interactions"],
            survivor.pk,
            conflicts["interactions"],
            user=acting_user,
            attrs=attrs,
        )
        # A record that changed at its source after the merge went back with its new values:
        # its customer's golden values follow it (the others are exactly as they were).
        owners = merge.before["source_records"]
        refreshed = sorted(
            {
                r.customer_id
                for r in records
                if r.customer_id != survivor.pk
                and owners.get(str(r.pk)) == r.customer_id
                and r.updated_at
                and r.updated_at > merge.created_at
            }
        )
        recomputed = golden_record_recompute(refreshed) if refreshed else None
    gone_records = set(map(int, merge.before["source_records"])) - {r.pk for r in records}
    conflicts["source_records"] += sorted(gone_records)
    gone_interactions = set(map(int, merge.before["interactions"])) - {i.pk for i in interactions}
    conflicts["interactions"] += sorted(gone_interactions)
    report = {
        "restored": sorted(ids),
        "conflicts": conflicts,
        "has_conflicts": any(conflicts.values()),
        "details": _undo_details(merge, survivor, conflicts, gone_records, gone_interactions),
        "recomputed": refreshed if recomputed and recomputed["changed"] else [],
    }
    merge.status = MergeStatus.UNDONE
    merge.undone_by = acting_user
    merge.undone_at = timezone.now()
    merge.undo_report = report
    if note:
        merge.note = (merge.note + "\n" + note).strip()
    merge.save()
    changes_record_bulk(
        Change(ChangeEventType.UNMERGED, int(pk), [], {"_merge": merge.pk, "_restored": sorted(ids)})
        for pk in sorted(ids)
    )
    # Undoing says "these are not one person": remember it so no run links them again.
    MatchCandidate.objects.filter(merge=merge).update(
        status=CandidateStatus.REJECTED, decided_by=acting_user, decided_at=timezone.now(), note="merge undone"
    )
    for other in merge.merged_ids:
        a, b = sorted((int(other), survivor.pk))
        MatchCandidate.objects.update_or_create(
            left_id=a,
            right_id=b,
            defaults={
                "status": CandidateStatus.REJECTED,
                "decided_by": acting_user,
                "decided_at": timezone.now(),
                "note": "merge undone",
                "merge": merge,
            },
            create_defaults={
                "score": 0.0,
                "status": CandidateStatus.REJECTED,
                "decided_by": acting_user,
                "decided_at": timezone.now(),
                "note": "merge undone",
                "merge": merge,
                "reason": "undo",
            },
        )
    clusters_refresh(ids)
    return report


def _give_back(model, owners: dict, survivor_id: int, conflicts: list, *, user, attrs: dict) -> list:  # noqa: ANN001
    """Return rows (source records or interactions) the merge moved to the survivor to the
    customer that owned them before (``owners``: pk -> customer id). A row that has moved on
    to another customer since is a conflict and stays where it is. Returns the rows found."""
    rows = list(model.objects.select_for_update().filter(pk__in=[int(k) for k in owners]))
    back = []
    for row in rows:
        owner = owners[str(row.pk)]
        if row.customer_id == owner:
            continue
        if row.customer_id != survivor_id:
            conflicts.append(row.pk)
            continue
        row.customer_id = owner
        back.append(row)
    if back:
        bulk_update_with_history(back, model, ["customer"], default_user=user, custom_historical_attrs=attrs)
    return rows


def _same(field, a, b) -> bool:  # noqa: ANN001
    if field.name == "id_number":
        return _restore_value(field, a) == _restore_value(field, b)
    return a == b


def _undo_details(merge: Merge, survivor: Customer, conflicts: dict, gone_records: set, gone_interactions: set) -> dict:
    """What an undo left in place and why, for a person: per conflicting field who changed it
    after the merge, when and through what (no values: pages present those through the
    field policy); per row that stayed, where it is now; rows that arrived on the survivor
    after the merge and stay with it."""
    fields = {f.name: f for f in _snapshot_fields()}
    after = merge.after.get("survivor", {})
    history = list(survivor.history.filter(history_date__gt=merge.created_at).order_by("history_date", "history_id"))
    field_rows = []
    for name in conflicts["fields"]:
        field = fields[name]
        row = {"field": name, "changed_at": None, "channel": "", "ref": "", "user": None}
        for h in history:
            if h.change_channel == ChangeChannel.MERGE and h.change_ref == f"merge:{merge.pk}":
                continue
            now = json.loads(json.dumps({"v": field.value_from_object(h)}, cls=_SnapshotEncoder))["v"]
            if name == "id_number" and now:
                now = encrypt(now)
            if not _same(field, now, after.get(field.attname)):
                row.update(
                    changed_at=h.history_date.isoformat(),
                    channel=h.change_channel,
                    ref=h.change_ref,
                    user=getattr(h.history_user, "username", None),
                )
                break
        field_rows.append(row)

    def rows(model, pks, owners: dict, describe) -> list:  # noqa: ANN001
        found = {o.pk: o for o in model.objects.filter(pk__in=pks)}
        out = []
        for pk in sorted(pks):
            obj = found.get(pk)
            entry = {"id": pk, "owner_before": owners.get(str(pk)), "customer_now": getattr(obj, "customer_id", None)}
            entry.update(describe(obj) if obj is not None else {"deleted": True})
            out.append(entry)
        return out

    def record(r) -> dict:  # noqa: ANN001
        # No source key: some sources key people by their mobile; pages look the record up by id.
        return {"source": r.source.code}

    def interaction(i) -> dict:  # noqa: ANN001
        return {"kind": i.kind, "external_id": i.external_id, "occurred_at": i.occurred_at.isoformat()}

    snap_records = set(map(int, merge.before["source_records"]))
    snap_interactions = set(map(int, merge.before["interactions"]))
    late_records = SourceRecord.objects.filter(customer_id=survivor.pk).exclude(pk__in=snap_records)
    late_interactions = Interaction.objects.filter(customer_id=survivor.pk).exclude(pk__in=snap_interactions)
    return {
        "fields": field_rows,
        "source_records": rows(
            SourceRecord,
            conflicts["source_records"],
            merge.before["source_records"],
            record,
        ),
        "interactions": rows(Interaction, conflicts["interactions"], merge.before["interactions"], interaction),
        "stayed_with_survivor": {
            "source_records": [{"id": r.pk, **record(r)} for r in late_records.select_related("source").order_by("pk")],
            "interactions": [{"id": i.pk, **interaction(i)} for i in late_interactions.order_by("pk")],
        },
    }


#
# Candidate decisions
#


class CandidateDecidedError(MergeError):
    """A candidate was decided (by someone else, or superseded by a merge) since it was read."""


def _decided_message(candidate: MatchCandidate) -> str:
    who = candidate.decided_by.get_username() if candidate.decided_by_id else ""
    when = timezone.localtime(candidate.decided_at).strftime("%Y-%m-%d %H:%M") if candidate.decided_at else ""
    status = candidate.get_status_display()
    if who:
        return _("Candidate %(id)s is not waiting for review: %(who)s decided it at %(when)s (%(status)s).") % {
            "id": candidate.pk,
            "who": who,
            "when": when,
            "status": status,
        }
    return _("Candidate %(id)s is not waiting for review (it is %(status)s).") % {"id": candidate.pk, "status": status}


@transaction.atomic
def candidate_approve(
    *,
    candidate: MatchCandidate,
    acting_user,  # noqa: ANN001
    values: dict | None = None,
    note: str = "",
    expected_versions: dict[int, int] | None = None,
    survivor: int | None = None,
) -> Merge:
    """Approve a pending candidate: merge the two records, into the older one unless
    ``survivor`` names the other. ``expected_versions`` are the versions the steward saw."""
    candidate = MatchCandidate.objects.select_for_update(of=("self",)).select_related("decided_by").get(pk=candidate.pk)
    if candidate.status != CandidateStatus.PENDING:
        raise CandidateDecidedError(_decided_message(candidate))
    survivors = _surviving_ids({candidate.left_id, candidate.right_id})
    left, right = survivors[candidate.left_id], survivors[candidate.right_id]
    if left == right:
        raise MergeError(
            _("Candidate %(id)s: both records already belong to customer %(customer)s.")
            % {"id": candidate.pk, "customer": left}
        )
    if survivor is not None and survivor not in (left, right):
        raise MergeError(
            _("Customer %(id)s is not one of the pair (%(left)s, %(right)s).")
            % {"id": survivor, "left": left, "right": right}
        )
    merge = customers_merge(
        customers=[left, right],
        survivor=survivor if survivor is not None else min(left, right),
        values=values,
        acting_user=acting_user,
        note=note,
        candidate=candidate,
        expected_versions=expected_versions,
    )
    candidate.status = CandidateStatus.APPROVED
    candidate.decided_by = acting_user
    candidate.decided_at = timezone.now()
    candidate.merge = merge
    candidate.note = note
    candidate.save()
    clusters_refresh([candidate.left_id, candidate.right_id])
    return merge


@transaction.atomic
def candidate_reject(*, candidate: MatchCandidate, acting_user, note: str = "") -> MatchCandidate:  # noqa: ANN001
    """Say the pair are different people; remembered, so no run proposes the pair again."""
    candidate = MatchCandidate.objects.select_for_update(of=("self",)).select_related("decided_by").get(pk=candidate.pk)
    if candidate.status != CandidateStatus.PENDING:
        raise CandidateDecidedError(_decided_message(candidate))
    candidate.status = CandidateStatus.REJECTED
    candidate.decided_by = acting_user
    candidate.decided_at = timezone.now()
    candidate.note = note
    candidate.save()
    clusters_refresh([candidate.left_id, candidate.right_id])  # the rest of its cluster may fall apart
    return candidate


#
# Review queue: assignment, clusters, bulk decisions
#


def candidates_assign(*, candidate_ids: Iterable[int], assignee, acting_user) -> int:  # noqa: ANN001
    """Give pending candidates to ``assignee`` (a steward or admin), or to nobody (None).
    Decided candidates keep their assignee. Returns how many were assigned."""
    from dedup.permissions import can_review

    if assignee is not None and not can_review(assignee):
        raise ValidationError(
            _("%(user)s is not a data steward; only stewards can be assigned.") % {"user": assignee.get_username()}
        )
    return MatchCandidate.objects.filter(pk__in=list(candidate_ids), status=CandidateStatus.PENDING).update(
        assignee=assignee
    )


def _pending_candidates_locked(ids: list[int]) -> list[MatchCandidate]:
    """The candidates ``ids``, locked; refused unless every one still exists and is pending."""
    candidates = list(
        MatchCandidate.objects.select_for_update(of=("self",))
        .select_related("decided_by")
        .filter(pk__in=ids)
        .order_by("pk")
    )
    if len(candidates) != len(ids):
        raise CandidateDecidedError(_("Some of these candidates no longer exist; reload the queue."))
    for candidate in candidates:
        if candidate.status != CandidateStatus.PENDING:
            raise CandidateDecidedError(_decided_message(candidate))
    return candidates


@transaction.atomic
def cluster_approve(
    *,
    candidate_ids: Iterable[int],
    acting_user,  # noqa: ANN001
    survivor: int | None = None,
    values: dict | None = None,
    note: str = "",
    expected_versions: dict[int, int] | None = None,
) -> Merge:
    """Approve a group of pending candidates (a cluster) as one merge of all their customers.
    Every candidate must still be pending, and no two of the customers may have been said to
    be different people."""
    ids = sorted(set(candidate_ids))
    candidates = _pending_candidates_locked(ids)
    if len(candidates) == 1:
        return candidate_approve(
            candidate=candidates[0],
            acting_user=acting_user,
            values=values,
            note=note,
            expected_versions=expected_versions,
            survivor=survivor,
        )
    originals = {i for c in candidates for i in (c.left_id, c.right_id)}
    survivors = _surviving_ids(originals)
    customers = sorted(set(survivors.values()))
    if len(customers) < 2:
        raise MergeError(_("These records already belong to one customer."))
    apart = {p for p in rejected_pairs(set(customers)) if p[0] in customers and p[1] in customers}
    if apart:
        a, b = sorted(apart)[0]
        raise MergeError(
            _("Customers %(a)s and %(b)s were marked as different people; decide the pairs one by one instead.")
            % {"a": a, "b": b}
        )
    merge = customers_merge(
        customers=customers,
        survivor=survivor if survivor is not None else customers[0],
        values=values,
        acting_user=acting_user,
        note=note,
        candidate=candidates[0],
        expected_versions=expected_versions,
    )
    MatchCandidate.objects.filter(pk__in=ids).update(
        status=CandidateStatus.APPROVED, decided_by=acting_user, decided_at=timezone.now(), merge=merge, note=note
    )
    clusters_refresh(originals)
    return merge


@transaction.atomic
def cluster_reject(*, candidate_ids: Iterable[int], acting_user, note: str = "") -> list[MatchCandidate]:  # noqa: ANN001
    """Reject every candidate of a group (all remembered). Refuses if any was decided meanwhile."""
    ids = sorted(set(candidate_ids))
    candidates = _pending_candidates_locked(ids)
    return [candidate_reject(candidate=c, acting_user=acting_user, note=note) for c in candidates]


def review_items_decide(*, items: list[dict], decision: str, acting_user, note: str = "") -> list[dict]:  # noqa: ANN001
    """Bulk decisions from the queue: each item (``{"candidates": [ids], "versions": {customer:
    version}}``) is approved (merged into its oldest customer, survivorship choosing the values)
    or rejected in its own transaction, so one stale item does not undo the others. Returns, per
    item, ``{"candidates", "ok", "merge", "error"}``."""
    if decision not in ("approve", "reject"):
        raise ValueError(f"unknown decision {decision!r}")
    results = []
    for item in items:
        result = {"candidates": list(item["candidates"]), "ok": False, "merge": None, "error": ""}
        try:
            if decision == "approve":
                merge = cluster_approve(
                    candidate_ids=item["candidates"],
                    acting_user=acting_user,
                    note=note,
                    expected_versions=item.get("versions") or None,
                )
                result["merge"] = merge.pk
            else:
                cluster_reject(candidate_ids=item["candidates"], acting_user=acting_user, note=note)
            result["ok"] = True
        except ValidationError as exc:
            result["error"] = "; ".join(exc.messages)
        results.append(result)
    return results


#
# Batch runs
#

PART_PAIRS = 250_000


@transaction.atomic
def dedup_run_create(*, rule_name: str | None = None, source_code: str = "", user=None) -> DedupRun:  # noqa: ANN001
    rule = rule_get(rule_name)
    rule.config()  # a broken rule fails here, with its reason, not halfway through a run
    if source_code and not Source.objects.filter(code=source_code).exists():
        raise ValidationError(_("There is no source with code %(code)s.") % {"code": repr(source_code)})
    return DedupRun.objects.create(rule=rule, source_code=source_code, created_by=user)


def dedup_run_claim(run_id: int) -> bool:
    """Claim a queued run (compare-and-swap): False if another worker already has it."""
    return bool(
        DedupRun.objects.filter(pk=run_id, status=RunStatus.PENDING).update(
            status=RunStatus.RUNNING, started_at=timezone.now()
        )
    )


def dedup_run_fail(run_id: int, error: BaseException) -> None:
    DedupRun.objects.filter(pk=run_id).exclude(status=RunStatus.COMPLETED).update(
        status=RunStatus.FAILED, error=f"{type(error).__name__}: {error}"[:2000], finished_at=timezone.now()
    )
    DedupRunPart.objects.filter(run_id=run_id).update(payload=b"", result=b"")


def _pack(obj) -> bytes:  # noqa: ANN001
    return zlib.compress(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), 3)


def _unpack(blob) -> object:  # noqa: ANN001
    return pickle.loads(zlib.decompress(bytes(blob)))  # noqa: S301 - our own rows, written by dedup_run_prepare


def _prepare_inputs(run: DedupRun) -> tuple:
    """The run's rule, the active customers' features and the candidate pairs (row positions)."""
    from dedup import blocking

    config = run.rule.config()
    features = build_features(customer_frame()).reset_index(drop=True)
    stats = blocking.BlockingStats()
    pairs = blocking.block_pairs(features, config.blocking_keys, max_block=config.max_block, stats=stats)
    records = len(features)
    if run.source_code:
        in_source = set(
            SourceRecord.objects.filter(source__code=run.source_code, customer__isnull=False).values_list(
                "customer_id", flat=True
            )
        )
        mask = features["id"].isin(in_source).to_numpy()
        pairs = pairs[mask[pairs[:, 0]] | mask[pairs[:, 1]]]
        records = int(mask.sum())
    return config, features, pairs, records, stats


def dedup_run_prepare(*, run: DedupRun, part_pairs: int = PART_PAIRS) -> int:
    """Load the records, block them into candidate pairs, learn m/u, and cut the pairs into
    parts (each with the features it needs). Returns the number of parts."""
    started, cpu_started = time.monotonic(), time.process_time()
    config, features, pairs, records, stats = _prepare_inputs(run)
    params = engine.learn_parameters(config, features, pairs)
    t_blocking = time.monotonic() - started
    DedupRunPart.objects.filter(run=run).delete()
    parts = []
    for number, start in enumerate(range(0, len(pairs), part_pairs)):
        chunk = pairs[start : start + part_pairs]
        rows = np.unique(chunk.ravel())
        local = features.iloc[rows].reset_index(drop=True)
        remap = np.searchsorted(rows, chunk)
        # The term-frequency counts of the values this part holds (the whole table stays here).
        tf_local = {
            c.name: {v: params.tf[c.name][v] for v in pd.unique(local[c.tf_column]) if v in params.tf[c.name]}
            for c in config.comparisons
            if c.name in params.tf
        }
        payload = _pack((local, remap, tf_local, params.tf_floor))
        parts.append(DedupRunPart(run=run, number=number, pairs=len(chunk), payload=payload))
    DedupRunPart.objects.bulk_create(parts, batch_size=20)
    run.records = records
    run.pairs = len(pairs)
    run.parts_total = len(parts)
    run.parameters = params.to_json()
    run.stats = {
        "blocking": {**stats.__dict__},
        "prepare_seconds": round(time.monotonic() - started, 2),
        "blocking_seconds": round(t_blocking, 2),
        # CPU of this process: on a shared machine wall time also counts waiting for a core.
        "prepare_cpu_seconds": round(time.process_time() - cpu_started, 2),
    }
    run.save(update_fields=["records", "pairs", "parts_total", "parameters", "stats"])
    return len(parts)


def dedup_run_prepare_and_score(*, run: DedupRun, processes: int = 1) -> engine.PairResults:
    """The inline run's first half, the parts' work done from memory: load and block as
    ``dedup_run_prepare``, compare every pair (in ``processes`` forked processes, sharing the
    features), learn m/u — EM reads its sample from those levels instead of comparing it
    again — and score. Nothing is pickled into parts. Returns the pairs worth keeping, as the
    scored parts would (same pairs, same order)."""
    started, cpu_started = time.monotonic(), time.process_time()
    config, features, pairs, records, stats = _prepare_inputs(run)
    t_blocking = time.monotonic() - started
    levels_started = time.monotonic()
    levels, child_cpu = _levels_in_processes(config, features, pairs, processes)
    levels_seconds = time.monotonic() - levels_started
    params = engine.learn_parameters(config, features, pairs, levels=levels)
    score_started = time.monotonic()
    res = engine.score_pair_positions(config, params, features, pairs, levels=levels)
    score_seconds = levels_seconds + time.monotonic() - score_started
    run.records = records
    run.pairs = len(pairs)
    run.parameters = params.to_json()
    run.stats = {
        "blocking": {**stats.__dict__},
        "prepare_seconds": round(time.monotonic() - started - score_seconds, 2),
        "blocking_seconds": round(t_blocking, 2),
        "score_seconds": round(score_seconds, 2),
        "prepare_cpu_seconds": round(time.process_time() - cpu_started, 2),
        # The comparing processes' CPU (``processes`` > 1), apart from this process's.
        "score_processes": processes,
        "score_child_cpu_seconds": round(child_cpu, 2),
    }
    run.save(update_fields=["records", "pairs", "parameters", "stats"])
    return res


_LEVELS_INPUT: tuple = ()


def _levels_in_processes(config, features: pd.DataFrame, pairs: np.ndarray, processes: int) -> tuple:  # noqa: ANN001
    """The level matrix of ``pairs``, compared a part (``PART_PAIRS`` pairs) at a time, the parts
    shared by ``processes`` forked processes (each reads the parent's features: nothing is
    pickled but the levels coming back). Returns (levels, the children's CPU seconds)."""
    global _LEVELS_INPUT  # noqa: PLW0603 - read by the forked children
    size = PART_PAIRS if processes <= 1 else min(PART_PAIRS, max(10_000, -(-len(pairs) // (2 * processes))))
    slices = [(start, min(start + size, len(pairs))) for start in range(0, len(pairs), size)]
    if not slices:
        return np.empty((0, len(config.comparisons)), dtype=np.int8), 0.0
    if processes <= 1 or len(slices) == 1:
        return np.concatenate([engine.levels_of(config, features, pairs[a:b]) for a, b in slices]), 0.0
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    _LEVELS_INPUT = (config, features, pairs)
    gc.freeze()  # the children's collector leaves the parent's objects (and their pages) alone
    try:
        with ProcessPoolExecutor(
            max_workers=processes,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_forget_inherited_connections,
        ) as pool:
            done = list(pool.map(_levels_in_child, slices))
    finally:
        gc.unfreeze()
        _LEVELS_INPUT = ()
    return np.concatenate([levels for levels, _cpu in done]), sum(cpu for _levels, cpu in done)


def _levels_in_child(bounds: tuple[int, int]) -> tuple[np.ndarray, float]:
    cpu = time.process_time()
    config, features, pairs = _LEVELS_INPUT
    levels = engine.levels_of(config, features, pairs[bounds[0] : bounds[1]])
    return levels, time.process_time() - cpu


def _run_params(run: DedupRun):  # noqa: ANN202
    from dedup.scoring import Parameters

    p = run.parameters
    return Parameters(m=p["m"], u=p["u"], prior=p["prior"])


def dedup_run_score_part(*, part: DedupRunPart) -> int:
    """Score one part's pairs; keep those worth a link or a review. Idempotent."""
    if part.done:
        return 0
    run = part.run
    config = run.rule.config()
    params = _run_params(run)
    features, pairs, params.tf, params.tf_floor = _unpack(part.payload)
    started = time.monotonic()
    results = engine.score_pair_positions(config, params, features, pairs)
    kept = {
        "left": results.left,
        "right": results.right,
        "score": results.score,
        "action": results.action,
        "reason": results.reason,
        "levels": results.levels,
        "contributions": results.contributions,
    }
    kept["seconds"] = np.array([time.monotonic() - started])
    updated = DedupRunPart.objects.filter(pk=part.pk, done=False).update(result=_pack(kept), done=True, payload=b"")
    if updated:
        DedupRun.objects.filter(pk=run.pk).update(parts_done=F("parts_done") + 1)
    return len(results.left)


def dedup_run_finish(*, run: DedupRun, processes: int = 1, scored: engine.PairResults | None = None) -> DedupRun:
    """Gather the parts' pairs, drop remembered rejections and decided pairs, cluster the
    automatic links with the guard, merge each cluster, and queue the rest for review.
    ``processes``: how many processes merge the clusters' chunks (``customers_merge_many``).
    On the workers the same three steps run as tasks: ``dedup_run_cluster``, one
    ``dedup_run_merge_part`` per chunk (any worker), ``dedup_run_complete``."""
    state = dedup_run_cluster(run=run, scored=scored)
    merge_stats: dict = {}
    cpu_started = time.process_time()
    with change_context(channel=ChangeChannel.MERGE, ref=f"dedup_run:{run.pk}", user=run.created_by):
        merged = customers_merge_many(
            clusters=state["clusters"],
            run=run,
            note=_merge_note(run),
            origin=MergeOrigin.AUTO,
            processes=processes,
            stats=merge_stats,
        )
    merge_stats["processes"] = processes
    merge_stats["cpu_seconds"] = time.process_time() - cpu_started
    return dedup_run_complete(run=run, state=state, merged=merged, merge_stats=merge_stats)


def _merge_note(run: DedupRun) -> str:
    return f"automatic link by rule {run.rule.name}"


def dedup_run_cluster(*, run: DedupRun, scored: engine.PairResults | None = None) -> dict:
    """The scored parts gathered (or ``scored``, the inline run's pairs scored from memory),
    decided pairs dropped, automatic links clustered under the guard: what merging and
    completing the run need (picklable: the workers hand it on)."""
    config = run.rule.config()
    params = _run_params(run)
    blobs = DedupRunPart.objects.filter(run=run, done=True).values_list("result", flat=True)
    chunks = [] if scored is not None else [_unpack(blob) for blob in blobs]
    finish_started, cpu_started = time.monotonic(), time.process_time()
    if scored is not None:
        score_seconds = run.stats.get("score_seconds", 0.0)
        res = scored
    elif chunks:
        score_seconds = round(sum(float(c.pop("seconds", np.zeros(1))[0]) for c in chunks), 2)
        res = engine.PairResults(**{k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]})
    else:
        score_seconds = 0.0
        empty = np.empty(0)
        res = engine.PairResults(
            left=empty.astype(np.int64),
            right=empty.astype(np.int64),
            score=empty,
            action=empty.astype(np.int8),
            reason=empty.astype(object),
            levels=np.empty((0, len(config.comparisons)), np.int8),
            contributions=np.empty((0, len(config.comparisons))),
        )
    # Pairs a steward already decided (rejected, approved) are never proposed again.
    decided = rejected_pairs()
    decided |= set(
        MatchCandidate.objects.exclude(status__in=[CandidateStatus.PENDING, CandidateStatus.SUPERSEDED]).values_list(
            "left_id", "right_id"
        )
    )
    if decided and len(res.left):
        keep = np.array([(a, b) not in decided for a, b in zip(res.left.tolist(), res.right.tolist(), strict=True)])
        res = engine.PairResults(**{k: getattr(res, k)[keep] for k in res.__dataclass_fields__})
    cluster_started = time.monotonic()
    if (res.action == 2).any():
        # Features only of the records the guard compares (components of more than two).
        guarded = engine.guarded_ids(res)
        features = build_features(customer_frame(ids=guarded)).reset_index(drop=True)
        clusters, review, split, largest = engine.cluster_links(config, params, features, res)
    else:
        clusters, review, split, largest = [], sorted(np.flatnonzero(res.action == 1).tolist()), 0, 0
    return {
        "res": res,
        "clusters": clusters,
        "review": review,
        "split": split,
        "largest": largest,
        "score_seconds": score_seconds,
        "finish_started_at": time.time() - (time.monotonic() - finish_started),
        "cluster_seconds": time.monotonic() - cluster_started,
        "cpu_seconds": time.process_time() - cpu_started,
        "merge_started_at": time.time(),
    }


def dedup_run_complete(*, run: DedupRun, state: dict, merged: dict[int, int], merge_stats: dict) -> DedupRun:
    """After the merges (``merged``: survivor → merge id): the linked pairs recorded, the
    rest queued for review, the run's statistics written, the run completed."""
    config = run.rule.config()
    cpu_started = time.process_time()
    res, clusters = state["res"], state["clusters"]
    merge_seconds = time.time() - state["merge_started_at"]
    # The pairs linked inside each merged cluster, cluster by cluster, each by (left, right).
    auto_merged = 0
    member_ids: list[int] = []
    member_cluster: list[int] = []
    merge_of: list[int] = []
    for members in clusters:
        merge_id = merged.get(members[0])
        if merge_id is None:
            continue
        auto_merged += len(members) - 1
        member_ids += members
        member_cluster += [len(merge_of)] * len(members)
        merge_of.append(merge_id)
    members = np.asarray(member_ids, dtype=np.int64)
    cluster_of = np.asarray(member_cluster, dtype=np.int64)
    linked_idx = _pairs_inside(res, members, cluster_of)
    linked_pairs = list(
        zip(
            res.left[linked_idx].tolist(),
            res.right[linked_idx].tolist(),
            np.asarray(merge_of, dtype=np.int64)[_cluster_of(res.left[linked_idx], members, cluster_of)].tolist(),
            linked_idx.tolist(),
            strict=True,
        )
    )
    link_cpu = time.process_time() - cpu_started
    candidates_started = time.monotonic()
    review_set = set(state["review"])
    candidates = _candidates_write(run, config, res, review_set, linked_pairs)
    clusters_refresh_run(run)  # the review clusters around this run's candidates and merges
    run.refresh_from_db()
    run.candidates = candidates["total"]
    run.for_review = candidates["pending"]
    run.auto_merged = auto_merged
    run.clusters = len(clusters)
    merge_cpu = merge_stats.pop("cpu_seconds", 0.0)
    run.stats = {
        **run.stats,
        "split_components": state["split"],
        "largest_component": state["largest"],
        "score_seconds": state["score_seconds"],
        "cluster_seconds": round(state["cluster_seconds"], 2),
        "merge_seconds": round(merge_seconds, 2),
        "candidates_seconds": round(time.monotonic() - candidates_started, 2),
        # The backends of the extra connections that wrote the candidates (when readable).
        "candidates_other_db_cpu_seconds": round(candidates["other_db_cpu_seconds"], 2),
        "finish_seconds": round(time.time() - state["finish_started_at"], 2),
        # CPU of the process(es) that ran each step; with merge processes or merge tasks the
        # merging children's CPU and their PostgreSQL backends' are given apart.
        "merge_cpu_seconds": round(merge_cpu, 2),
        "finish_cpu_seconds": round(state["cpu_seconds"] + merge_cpu + link_cpu + time.process_time() - cpu_started, 2),
        **{f"merge_{k}": (round(v, 2) if isinstance(v, float) else v) for k, v in merge_stats.items()},
    }
    run.status = RunStatus.COMPLETED
    run.finished_at = timezone.now()
    run.save()
    DedupRunPart.objects.filter(run=run).update(payload=b"", result=b"")
    MatchRule.objects.filter(pk=run.rule_id).update(parameters=run.parameters)
    return run


def dedup_run_merge_parts_create(*, run: DedupRun, chunk: int | None = None) -> list[int]:
    """Workers: cluster the run, keep the state for ``dedup_run_complete`` and cut the clusters
    into merge parts (chunks of disjoint clusters, any worker can take any). Returns the merge
    parts' ids; the run's part counters now count merge parts."""
    state = dedup_run_cluster(run=run)
    clusters = state["clusters"]
    size = chunk or MERGE_CHUNK
    first = (DedupRunPart.objects.filter(run=run).order_by("-number").values_list("number", flat=True).first() or 0) + 1
    parts = [
        DedupRunPart(run=run, number=first + k, stage=PartStage.MERGE, payload=_pack(clusters[s : s + size]))
        for k, s in enumerate(range(0, len(clusters), size))
    ]
    with transaction.atomic():
        DedupRunPart.objects.create(
            run=run, number=first + len(parts), stage=PartStage.STATE, payload=_pack(state), done=True
        )
        DedupRunPart.objects.bulk_create(parts, batch_size=50)
        DedupRun.objects.filter(pk=run.pk).update(status=RunStatus.MERGING, parts_total=len(parts), parts_done=0)
    return [p.pk for p in parts]


def dedup_run_merge_part(*, part: DedupRunPart) -> int:
    """Merge one part's clusters, exactly once: the part is locked, merged and marked done in
    one transaction (a redelivered task finds it done). Returns the merges made."""
    from dedup.survivorship import SourceIndex, rules_load

    run = part.run
    cpu, db_cpu = time.process_time(), db_backend_cpu_seconds()
    with change_context(channel=ChangeChannel.MERGE, ref=f"dedup_run:{run.pk}", user=run.created_by):
        with transaction.atomic():
            if not DedupRunPart.objects.select_for_update().filter(pk=part.pk, done=False).exists():
                return 0
            clusters = _unpack(DedupRunPart.objects.values_list("payload", flat=True).get(pk=part.pk))
            merged = _merge_chunk(clusters, run, _merge_note(run), MergeOrigin.AUTO, rules_load(), SourceIndex())
            db_after = db_backend_cpu_seconds()
            used = {
                "cpu_seconds": time.process_time() - cpu,
                "db_cpu_seconds": None if db_cpu is None or db_after is None else db_after - db_cpu,
            }
            DedupRunPart.objects.filter(pk=part.pk).update(result=_pack((merged, used)), done=True, payload=b"")
            DedupRun.objects.filter(pk=run.pk).update(parts_done=F("parts_done") + 1)
    return len(merged)


def dedup_run_complete_merged(*, run: DedupRun) -> DedupRun:
    """Workers: the merge parts are done — gather their merges and complete the run."""
    state_blob = DedupRunPart.objects.filter(run=run, stage=PartStage.STATE).values_list("payload", flat=True).get()
    state = _unpack(state_blob)
    merged: dict[int, int] = {}
    merge_stats: dict = {"tasks": 0}
    for blob in DedupRunPart.objects.filter(run=run, stage=PartStage.MERGE).values_list("result", flat=True):
        part_merged, used = _unpack(blob)
        merged.update(part_merged)
        merge_stats["tasks"] += 1
        merge_stats["child_cpu_seconds"] = merge_stats.get("child_cpu_seconds", 0.0) + used["cpu_seconds"]
        if used["db_cpu_seconds"] is not None:
            merge_stats["child_db_cpu_seconds"] = merge_stats.get("child_db_cpu_seconds", 0.0) + used["db_cpu_seconds"]
    return dedup_run_complete(run=run, state=state, merged=merged, merge_stats=merge_stats)


def _cluster_of(ids: np.ndarray, member_ids: np.ndarray, member_cluster: np.ndarray) -> np.ndarray:
    """The cluster position of each of ``ids`` (-1: in none), clusters given by their members."""
    if not len(member_ids):
        return np.full(len(ids), -1, dtype=np.int64)
    order = np.argsort(member_ids, kind="stable")
    sorted_ids = member_ids[order]
    at = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return np.where(sorted_ids[at] == ids, member_cluster[order][at], -1)


def _pairs_inside(res, member_ids: np.ndarray, member_cluster: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """Indexes into ``res`` of the automatic links whose two records are in one cluster, in the
    clusters' order and then by (left, right)."""
    link = np.flatnonzero(res.action == 2)
    if not len(link) or not len(member_ids):
        return np.empty(0, dtype=np.int64)
    left_cluster = _cluster_of(res.left[link], member_ids, member_cluster)
    right_cluster = _cluster_of(res.right[link], member_ids, member_cluster)
    inside = (left_cluster >= 0) & (left_cluster == right_cluster)
    link, cluster = link[inside], left_cluster[inside]
    return link[np.lexsort((res.right[link], res.left[link], cluster))]


def _candidates_write(run, config, res, review_set, linked_pairs) -> dict:  # noqa: ANN001
    """Upsert candidate rows: auto-merged links (for the record) and pending reviews.
    ``linked_pairs``: (left, right, merge id, index into ``res``) of the links merged."""
    now = timezone.now()
    # Rows in the order they are written (which decides the ids they get): the links, then
    # the reviews. Each row: its pair, the index of its scores in ``res`` and its own values.
    keys: dict[tuple[int, int], int] = {}  # pair → its row
    index: list[int] = []
    status: list[str] = []
    reason: list[str] = []
    merge: list[int | None] = []
    for a, b, merge_id, i in linked_pairs:
        k = keys.setdefault((a, b), len(index))
        if k < len(index):  # a pair given twice keeps its place and its last values
            index[k], reason[k], merge[k] = i, str(res.reason[i]), merge_id
            continue
        index.append(i)
        status.append(CandidateStatus.AUTO_MERGED)
        reason.append(str(res.reason[i]))
        merge.append(merge_id)
    linked = len(index)
    # A review pair whose records were just merged elsewhere is proposed between the survivors
    # (once, with its best score); a pair now inside one customer is moot.
    review_ids = {x for k in review_set for x in (int(res.left[k]), int(res.right[k]))}
    survivor_of = _surviving_ids(review_ids) if review_ids else {}
    rejected = rejected_pairs(set(survivor_of.values())) if survivor_of else set()
    best: dict[tuple[int, int], int] = {}
    for i in sorted(review_set):
        a, b = survivor_of[int(res.left[i])], survivor_of[int(res.right[i])]
        if a == b:
            continue
        key = (min(a, b), max(a, b))
        if key in keys or key in rejected:
            continue
        if key not in best or res.score[i] > res.score[best[key]]:
            best[key] = i
    for key, i in best.items():
        keys[key] = len(index)
        index.append(i)
        status.append(CandidateStatus.PENDING)
        reason.append(str(res.reason[i]) if res.action[i] == 1 else "cluster_guard")
        merge.append(None)
    idx = np.asarray(index, dtype=np.int64)
    explain = engine.Explainer(config, as_json=connection.vendor == "postgresql")
    pairs = list(keys)
    columns = {
        "left_id": [a for a, _b in pairs],
        "right_id": [b for _a, b in pairs],
        "score": res.score[idx].astype(np.float64).tolist(),
        "rule": run.rule.name,
        "run_id": run.pk,
        "explanation": explain.many(res.levels[idx], res.contributions[idx]),
        "reason": reason,
        "status": status,
        "merge_id": merge,
        "decided_at": [now] * linked + [None] * (len(idx) - linked),
    }
    other_db_cpu = _candidates_upsert(columns, len(idx))
    return {"total": len(idx), "pending": len(idx) - linked, "other_db_cpu_seconds": other_db_cpu}


_CANDIDATE_UPDATED = ["score", "rule", "run", "reason", "status", "merge", "decided_at", "explanation"]
# A batch run's candidates (~0.4M at 1M records) are written on this many connections at once.
CANDIDATE_CONNECTIONS = 2
PARALLEL_CANDIDATES_ABOVE = 50_000


def _candidates_upsert(columns: dict, n: int) -> float:
    """Insert ``n`` new candidate pairs, given by column (attname → a list of ``n`` values, or
    one value for every row); a pair already known is refreshed only while it is still open
    (pending or superseded) — a steward's decision is never overwritten. PostgreSQL: COPY into
    a temporary table and one ``INSERT ... ON CONFLICT``, the explanations already JSON text
    (large batches on several connections at once); elsewhere through the ORM. Returns the CPU
    seconds of the extra connections' backends when they can be read (benchmarks), else 0."""
    if not n:
        return 0.0
    columns = {k: (v if isinstance(v, list) else [v] * n) for k, v in columns.items()}
    open_statuses = [CandidateStatus.PENDING, CandidateStatus.SUPERSEDED]
    if connection.vendor != "postgresql":
        names = list(columns)
        objs = [MatchCandidate(**dict(zip(names, row, strict=True))) for row in zip(*columns.values(), strict=True)]
        existing = {
            (c.left_id, c.right_id): c
            for c in MatchCandidate.objects.filter(
                left_id__in={r.left_id for r in objs}, right_id__in={r.right_id for r in objs}
            ).only("id", "left_id", "right_id", "status")
        }
        create, update = [], []
        for obj in objs:
            old = existing.get((obj.left_id, obj.right_id))
            if old is None:
                create.append(obj)
            elif old.status in open_statuses:
                obj.pk = old.pk
                update.append(obj)
        _copy_objects(MatchCandidate, create)
        if update:
            MatchCandidate.objects.bulk_update(update, _CANDIDATE_UPDATED, batch_size=2000)
        return 0.0
    from django.db.models import JSONField

    qn = connection.ops.quote_name
    table = qn(MatchCandidate._meta.db_table)
    fields = [f for f in MatchCandidate._meta.concrete_fields if not f.primary_key]
    # Columns the rows leave out get the model's defaults (computed once, JSON as text).
    now = timezone.now()
    for f in fields:
        if f.attname in columns:
            continue
        if getattr(f, "auto_now_add", False) or getattr(f, "auto_now", False):
            value = now
        elif f.has_default():
            value = f.get_default()
            value = json.dumps(value) if isinstance(f, JSONField) else value
        else:
            value = None if f.null else ""
        columns[f.attname] = [value] * n
    # Most of the cost is the server's (per-row foreign-key checks, index entries, JSON parsing)
    # while this process waits: large batches are split over two connections so a second core
    # works — unless a caller's transaction is open, whose fate the other connection could not
    # share. Each part's checks run with its statement (IMMEDIATE), so that once both parts are
    # written nothing is left that could make one commit fail after the other committed.
    parts = CANDIDATE_CONNECTIONS if n >= PARALLEL_CANDIDATES_ABOVE and not connection.in_atomic_block else 1
    if parts > 1:
        # Ids drawn here in row order, as the one-connection INSERT would draw them row by row:
        # the same rows either way.
        columns["id"] = _allocate_ids(MatchCandidate, n)
        fields = [MatchCandidate._meta.pk, *fields]
    names = ", ".join(qn(f.column) for f in fields)
    updated = [MatchCandidate._meta.get_field(n).column for n in _CANDIDATE_UPDATED]
    statement = (
        f"INSERT INTO {table} AS c ({names}) SELECT {names} FROM tmp_candidates "  # noqa: S608
        f"ON CONFLICT (left_id, right_id) DO UPDATE SET "
        + ", ".join(f"{qn(c)} = EXCLUDED.{qn(c)}" for c in updated)
        + " WHERE c.status = ANY(%s)"
    )
    rows = list(zip(*(columns[f.attname] for f in fields), strict=True))
    bounds = [n * i // parts for i in range(parts + 1)]
    chunks = [rows[bounds[i] : bounds[i + 1]] for i in range(parts)]
    write = (table, names, statement, open_statuses, parts > 1)
    with transaction.atomic():
        if parts == 1:
            _candidates_copy_insert(connection.connection, chunks[0], *write)
            return 0.0
        others = [connection.get_new_connection(connection.get_connection_params()) for _chunk in chunks[1:]]
        cpu_before = [db_backend_cpu_seconds(other.info.backend_pid) for other in others]
        try:
            with ThreadPoolExecutor(max_workers=len(others)) as pool:
                futures = [
                    pool.submit(_candidates_copy_insert, other, chunk, *write)
                    for other, chunk in zip(others, chunks[1:], strict=True)
                ]
                _candidates_copy_insert(connection.connection, chunks[0], *write)
                for future in futures:
                    future.result()
            for other in others:
                other.commit()
            cpu_after = [db_backend_cpu_seconds(other.info.backend_pid) for other in others]
        finally:
            for other in others:
                other.close()  # rolls back what was not committed
    if None in cpu_before or None in cpu_after:
        return 0.0
    return sum(cpu_after) - sum(cpu_before)


def _candidates_copy_insert(  # noqa: PLR0913
    raw,  # noqa: ANN001
    rows: list,
    table: str,
    names: str,
    statement: str,
    open_statuses: list,
    one_of_several: bool,  # noqa: FBT001
) -> None:
    """COPY ``rows`` into a temporary table on the psycopg connection ``raw`` (inside its open
    transaction, which ends with it) and upsert them from there. ``one_of_several``: the rows
    carry their ids and their foreign keys are checked with the statement."""
    with raw.cursor() as cursor:
        if one_of_several:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"CREATE TEMPORARY TABLE tmp_candidates (LIKE {table} INCLUDING DEFAULTS)")
        if not one_of_several:
            cursor.execute("ALTER TABLE tmp_candidates DROP COLUMN id")
        with cursor.copy(f"COPY tmp_candidates ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(statement, [open_statuses])
        cursor.execute("DROP TABLE tmp_candidates")


def dedup_run_execute_inline(*, run: DedupRun, processes: int = 1) -> DedupRun:
    """The whole run in this process (``--inline``, tests); with ``processes`` > 1 the merges
    are shared by that many forked processes (see ``customers_merge_many``)."""
    if not dedup_run_claim(run.pk):
        raise ValidationError(_("Run %(id)s is not queued (it is %(status)s).") % {"id": run.pk, "status": run.status})
    run.refresh_from_db()
    try:
        scored = dedup_run_prepare_and_score(run=run, processes=processes)
        return dedup_run_finish(run=run, processes=processes, scored=scored)
    except Exception as exc:
        dedup_run_fail(run.pk, exc)
        raise


def dedup_run_summary(run: DedupRun) -> dict:
    return {
        "run": run.pk,
        "records": run.records,
        "candidates": run.candidates,
        "auto_merged": run.auto_merged,
        "for_review": run.for_review,
        "seconds": run.seconds,
    }


#
# Real time
#

REALTIME_LOOKUPS = {
    # blocking key → customer column lookups that find the same key value through an index
    "mobile": "mobile",
    "email": "email",
    "id_number_hash": "id_number_hash",
    "wechat_unionid": "wechat_unionid",
    "member_no": "member_no",
    "name_pinyin": "name_pinyin",
}


def _realtime_params(rule: MatchRule):  # noqa: ANN202
    from dedup.scoring import Parameters

    config = rule.config()
    p = rule.parameters or {}
    if p.get("m") and p.get("u") and set(p["m"]) >= {c.name for c in config.comparisons}:
        return config, Parameters(m=p["m"], u=p["u"], prior=p.get("prior", 0.05))
    return config, Parameters.defaults(config.comparisons)


def records_match(*, source_record_ids: list[int], rule: MatchRule | None = None, acting_user=None) -> dict:  # noqa: ANN001
    """Match newly arrived source records against the existing customers.

    Each record's own customer (the import creates one per new record) is looked up by
    indexed keys — same mobile, email, ID blind index, unionid, member number, or same
    sound-alike name with the same birth date — never by scanning. A deterministic or
    above-threshold match merges the new customer into the existing one; a review-band
    match becomes a pending candidate. Returns counts and, per record, what happened.

    The rule, its parameters and what a merge reads besides the customers are kept per
    process and checked against a fingerprint read with the records (``dedup.realtime``).
    """
    from dedup import realtime

    arrivals = realtime.arrivals_load(source_record_ids)
    outcome = {"records": len(arrivals), "merged": 0, "for_review": 0, "unmatched": 0, "results": []}
    if not arrivals:
        return outcome
    state = realtime.state_for(arrivals[0].stamp)
    if rule is None and state.rule is not None:
        rule, (config, params) = state.rule, (state.config, state.params)
    else:
        rule = rule or rule_get(None)  # without an active rule: says why
        config, params = _realtime_params(rule)
    for arrival in arrivals:
        with transaction.atomic():  # one commit per record, whatever it writes
            result = _match_one(arrival, config, params, rule, acting_user, state)
        outcome["results"].append(result)
        outcome[{"merged": "merged", "review": "for_review"}.get(result["action"], "unmatched")] += 1
    return outcome


def _match_one(arrival, config, params, rule: MatchRule, acting_user, state) -> dict:  # noqa: ANN001
    from dedup import realtime

    customer_id = arrival.customer_id
    base = {"source_record": arrival.record_id, "customer": customer_id}
    if arrival.status != CustomerStatus.ACTIVE:
        survivors = _surviving_ids({customer_id})
        return {**base, "customer": survivors[customer_id], "action": "none", "reason": "customer not active"}
    found = realtime.candidates_load(arrival)
    # Every branch is an indexed column (full_name has no index: it would force a scan).
    if found is None:
        return {**base, "action": "none", "reason": "no matching keys"}
    others = found.others
    if not others:
        return {**base, "action": "none", "reason": "no candidates"}
    # Features and scores of the customer against its few candidates only.
    res = realtime.score_against(config, params, found.mine, others)
    if not (res.action > 0).any():
        return {**base, "action": "none", "reason": "below review threshold"}
    # A rejection outlives merges (rejected_pairs maps it to survivors); none touches them: none applies.
    rejected = rejected_pairs({customer_id, *(o["id"] for o in others)}) if found.rejections else set()
    order = np.argsort(-res.score, kind="stable")
    best = None
    for i in order:
        other = int(res.right[i])
        key = (min(customer_id, other), max(customer_id, other))
        if key in rejected or res.action[i] == 0:
            continue
        best = i
        break
    if best is None:
        return {**base, "action": "none", "reason": "below review threshold"}
    other = int(res.right[best])
    left, right = min(customer_id, other), max(customer_id, other)
    values = {
        "left_id": left,
        "right_id": right,
        "score": float(res.score[best]),
        "rule": rule.name,
        "reason": str(res.reason[best]),
        "explanation": engine.explanation(config, res.levels[best], res.contributions[best]),
    }
    if res.action[best] == 2:
        with change_context(channel=ChangeChannel.MERGE, ref=f"source_record:{arrival.record_id}", user=acting_user):
            merged = realtime.merge_pair(
                survivor_id=other,
                merged_id=customer_id,
                candidate={**values, "status": CandidateStatus.AUTO_MERGED, "decided_at": timezone.now()},
                origin=MergeOrigin.REALTIME,
                note=f"real-time match by rule {rule.name}",
                state=state,
            )
        if merged.merge_id is None:
            return {**base, "action": "none", "reason": "candidate no longer active"}
        if merged.clusters_touched:
            clusters_refresh([left, right])
        return {**base, "customer": other, "action": "merged", "merge": merged.merge_id, "score": values["score"]}
    candidate_id = realtime.candidate_upsert({**values, "status": CandidateStatus.PENDING})
    clusters_refresh([left, right])
    return {**base, "action": "review", "candidate": candidate_id, "score": values["score"]}
