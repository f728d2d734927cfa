"""Reads of duplicate detection: candidate queues restricted to the user, explanations
presented through the field policy, and the CSV exports."""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.permissions import restrict_customers
from accounts.policy import Access, policy_for, value_as_text
from accounts.roles import Role
from crmhub.choices import CustomerStatus
from crmhub.models import Customer, SourceRecord
from dedup.choices import CandidateStatus
from dedup.models import MatchCandidate, Merge


def candidate_list(*, user, status: str = "") -> QuerySet[MatchCandidate]:  # noqa: ANN001
    """Candidates whose two customers the user may both reach."""
    visible = restrict_customers(Customer.objects.all(), user)
    qs = MatchCandidate.objects.all()
    # Unscoped roles reach every customer: no need for two semi-joins per candidate (they cost
    # seconds over a large queue).
    if visible.query.where or visible.query.is_empty():
        qs = qs.filter(Exists(visible.filter(pk=OuterRef("left_id"))), Exists(visible.filter(pk=OuterRef("right_id"))))
    qs = qs.select_related("left", "right")
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("-score", "id")


def candidate_get(*, user, pk: int) -> MatchCandidate:  # noqa: ANN001
    from django.http import Http404

    candidate = candidate_list(user=user).filter(pk=pk).first()
    if candidate is None:
        raise Http404("No such candidate")
    return candidate


def candidate_explanation(*, user, candidate: MatchCandidate) -> list[dict]:  # noqa: ANN001
    """The stored explanation with each field's two values as ``user`` may see them: a value
    the user may not see is left out (hidden) or masked, never shown in clear."""
    policy = policy_for(user)
    rows = []
    for item in candidate.explanation or []:
        values = []
        for name in item.get("fields", []):
            if policy(name) <= Access.HIDDEN:
                continue
            values.append(
                {
                    "field": name,
                    "label": policy.fields[name].label if name in policy.fields else name,
                    "left": policy.present(name, _display(candidate.left.get_value(name))),
                    "right": policy.present(name, _display(candidate.right.get_value(name))),
                }
            )
        rows.append(
            {
                "comparison": item.get("comparison"),
                "level": item.get("level"),
                "weight": item.get("weight"),
                "values": values,
            }
        )
    return rows


def _display(value) -> str:  # noqa: ANN001
    if value is None:
        return ""
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def merge_list(*, user) -> QuerySet[Merge]:  # noqa: ANN001
    visible = restrict_customers(Customer.objects.all(), user)
    return Merge.objects.filter(Exists(visible.filter(pk=OuterRef("survivor_id")))).order_by("-id")


def survivor_map() -> dict[int, int]:
    """Merged customer id → surviving customer id (chains followed), for every tombstone."""
    direct = dict(Customer.objects.filter(status=CustomerStatus.MERGED).values_list("pk", "merged_into_id"))
    resolved: dict[int, int] = {}
    for start in direct:
        path = []
        current = start
        while current in direct and current not in resolved and len(path) < 100:
            path.append(current)
            current = direct[current]
        final = resolved.get(current, current)
        for node in path:
            resolved[node] = final
    return resolved


def xref_write_csv(handle: IO[str]) -> int:
    """``source,source_key,customer_id`` for every source record, streamed."""
    survivors = survivor_map()
    writer = csv.writer(handle)
    writer.writerow(["source", "source_key", "customer_id"])
    count = 0
    rows = SourceRecord.objects.order_by("source__code", "source_key").values_list(
        "source__code", "source_key", "customer_id"
    )
    for code, key, customer_id in rows.iterator(chunk_size=5000):
        writer.writerow([code, key, "" if customer_id is None else survivors.get(customer_id, customer_id)])
        count += 1
    return count


def origin_records(customer_ids: set[int]) -> dict[int, tuple[str, str]]:
    """For each customer, the (source, key) of the record it stands for: the record created
    with it (history), else a record it held before a merge, else its lowest current one."""
    out: dict[int, tuple[str, str]] = {}
    if not customer_ids:
        return out
    created = (
        SourceRecord.history.filter(history_type="+", customer_id__in=customer_ids)
        .order_by("id")
        .values_list("customer_id", "source_id", "source_key")
    )
    from crmhub.models import Source

    source_codes = dict(Source.objects.values_list("pk", "code"))
    for cid, source_id, key in created:
        out.setdefault(cid, (source_codes.get(source_id, ""), key))
    missing = customer_ids - out.keys()
    if missing:
        record_owner: dict[int, int] = {}
        for before in Merge.objects.values_list("before", flat=True):
            for rid, owner in (before or {}).get("source_records", {}).items():
                if owner in missing:
                    record_owner.setdefault(int(rid), owner)
        for rid, code, key in (
            SourceRecord.objects.filter(pk__in=record_owner)
            .order_by("pk")
            .values_list("pk", "source__code", "source_key")
        ):
            out.setdefault(record_owner[rid], (code, key))
    missing = customer_ids - out.keys()
    if missing:
        for cid, code, key in (
            SourceRecord.objects.filter(customer_id__in=missing)
            .order_by("pk")
            .values_list("customer_id", "source__code", "source_key")
        ):
            out.setdefault(cid, (code, key))
    return out


def candidates_write_csv(handle: IO[str], *, status: str = "") -> int:
    qs = MatchCandidate.objects.order_by("-score", "id")
    if status:
        if status not in CandidateStatus.values:
            raise ValueError(f"unknown status {status!r}")
        qs = qs.filter(status=status)
    rows = list(qs.values_list("left_id", "right_id", "score", "status"))
    origins = origin_records({i for r in rows for i in r[:2]})
    writer = csv.writer(handle)
    writer.writerow(["left_source", "left_key", "right_source", "right_key", "score", "status"])
    for left, right, score, st in rows:
        ls, lk = origins.get(left, ("", ""))
        rs, rk = origins.get(right, ("", ""))
        writer.writerow([ls, lk, rs, rk, f"{score:.4f}", st])
    return len(rows)


#
# Review queue: filters, clusters, the compare screen
#

# Score bands of the queue filter: name -> (lowest included, highest excluded).
SCORE_BANDS = {"high": (0.95, None), "medium": (0.85, 0.95), "low": (None, 0.85)}
# Age filter: name -> (youngest, oldest) as time since the candidate was proposed.
AGES = {
    "day": (None, dt.timedelta(days=1)),
    "week": (None, dt.timedelta(days=7)),
    "older_week": (dt.timedelta(days=7), None),
    "older_month": (dt.timedelta(days=30), None),
}
SORTS = ("-score", "score", "age", "-age")


@dataclass
class ReviewFilters:
    """What the queue (page or API) is narrowed to. ``assignee`` is "me", "none" or a user id."""

    status: str = CandidateStatus.PENDING
    source: str = ""
    rule: str = ""
    band: str = ""
    min_score: float | None = None
    max_score: float | None = None
    age: str = ""
    assignee: str = ""

    @classmethod
    def from_params(cls, params, *, status: str = CandidateStatus.PENDING) -> ReviewFilters:  # noqa: ANN001
        """From a request's query parameters; unknown values raise ValueError (said for a person)."""

        def number(name: str) -> float | None:
            raw = (params.get(name) or "").strip()
            if not raw:
                return None
            try:
                return float(raw)
            except ValueError:
                raise ValueError(
                    _("%(name)s must be a number, not %(raw)s.") % {"name": name, "raw": repr(raw)}
                ) from None

        out = cls(
            status=status,
            source=(params.get("source") or "").strip(),
            rule=(params.get("rule") or "").strip(),
            band=(params.get("band") or "").strip(),
            min_score=number("min_score"),
            max_score=number("max_score"),
            age=(params.get("age") or "").strip(),
            assignee=(params.get("assignee") or "").strip(),
        )
        if out.status and out.status not in CandidateStatus.values:
            raise ValueError(
                _("Unknown status; use one of %(choices)s.") % {"choices": ", ".join(CandidateStatus.values)}
            )
        if out.band and out.band not in SCORE_BANDS:
            raise ValueError(_("Unknown score band; use one of %(choices)s.") % {"choices": ", ".join(SCORE_BANDS)})
        if out.age and out.age not in AGES:
            raise ValueError(_("Unknown age; use one of %(choices)s.") % {"choices": ", ".join(AGES)})
        if out.assignee and out.assignee not in ("me", "none") and not out.assignee.isdigit():
            user = get_user_model().objects.filter(username=out.assignee).only("pk").first()
            if user is None:
                raise ValueError(_("No user named %(name)s.") % {"name": repr(out.assignee)})
            out.assignee = str(user.pk)
        return out


def candidates_filtered(*, user, filters: ReviewFilters) -> QuerySet[MatchCandidate]:  # noqa: ANN001
    """``candidate_list`` narrowed by ``filters`` (source, rule, score, age, assignee)."""
    qs = candidate_list(user=user, status=filters.status)
    if filters.source:
        # IN (subquery) lets PostgreSQL hash the source's customers once; correlated EXISTS
        # probes per candidate cost seconds over a large queue.
        from_source = SourceRecord.objects.filter(source__code=filters.source).values("customer_id")
        qs = qs.filter(Q(left_id__in=from_source) | Q(right_id__in=from_source))
    if filters.rule:
        qs = qs.filter(rule=filters.rule)
    low, high = SCORE_BANDS.get(filters.band, (None, None))
    if filters.min_score is not None:
        low = max(low or 0.0, filters.min_score)
    if filters.max_score is not None:
        qs = qs.filter(score__lte=filters.max_score)
    if low is not None:
        qs = qs.filter(score__gte=low)
    if high is not None:
        qs = qs.filter(score__lt=high)
    if filters.age:
        now = timezone.now()
        youngest, oldest = AGES[filters.age]
        if youngest is not None:
            qs = qs.filter(created_at__lte=now - youngest)
        if oldest is not None:
            qs = qs.filter(created_at__gt=now - oldest)
    if filters.assignee == "me":
        qs = qs.filter(assignee=user)
    elif filters.assignee == "none":
        qs = qs.filter(assignee__isnull=True)
    elif filters.assignee:
        qs = qs.filter(assignee_id=int(filters.assignee))
    return qs


@dataclass
class ReviewItem:
    """One entry of the queue: a pair, or a cluster of pending pairs sharing customers."""

    candidate_ids: list[int]
    customer_ids: list[int]
    score: float
    created_at: Any
    candidates: list[MatchCandidate] = field(default_factory=list)

    @property
    def key(self) -> int:
        return self.candidate_ids[0]

    @property
    def is_cluster(self) -> bool:
        return len(self.customer_ids) > 2

    @property
    def candidates_param(self) -> str:
        return ",".join(map(str, self.candidate_ids))


def _components(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Connected components of the edges (left[i], right[i]): a component label per edge.
    Vectorised (min-label propagation with pointer jumping): tens of milliseconds for 10⁵
    edges, where a Python union-find over the same pairs takes seconds."""
    if not len(left):
        return np.empty(0, dtype=np.int64)
    _nodes, dense = np.unique(np.concatenate([left, right]), return_inverse=True)
    lo, hi = dense[: len(left)], dense[len(left) :]
    labels = np.arange(len(_nodes))
    while True:
        smallest = np.minimum(labels[lo], labels[hi])
        new = labels.copy()
        np.minimum.at(new, lo, smallest)
        np.minimum.at(new, hi, smallest)
        new = new[new]
        if np.array_equal(new, labels):
            return labels[lo]
        labels = new


class ReviewItems:
    """The queue's items in order, built lazily: ``len()`` and slicing (for the paginator)
    only create the ReviewItems of the slice asked for."""

    def __init__(self, pk, left, right, score, starts, ends, order) -> None:  # noqa: ANN001
        self._pk, self._left, self._right, self._score = pk, left, right, score
        self._starts, self._ends, self._order = starts, ends, order

    def __len__(self) -> int:
        return len(self._order)

    def _item(self, group: int) -> ReviewItem:
        a, b = int(self._starts[group]), int(self._ends[group])
        return ReviewItem(
            candidate_ids=sorted(self._pk[a:b].tolist()),
            customer_ids=sorted(set(self._left[a:b].tolist()) | set(self._right[a:b].tolist())),
            score=float(self._score[a:b].max()),
            created_at=None,
        )

    def __getitem__(self, index):  # noqa: ANN001, ANN204
        if isinstance(index, slice):
            return [self._item(g) for g in self._order[index]]
        return self._item(self._order[index])

    def __iter__(self):  # noqa: ANN204
        return (self._item(g) for g in self._order)


def review_items(*, user, filters: ReviewFilters, sort: str = "-score") -> ReviewItems:  # noqa: ANN001
    """The pending queue as items: connected groups of pending candidates (over all pending
    candidates the user may see, so a filter never splits a cluster), kept when at least one
    of their candidates passes ``filters``, sorted by best score or by oldest proposal.

    One query reads the pending candidates' ids, customers and scores (oldest first), a
    second the ids passing the filters (none without filters); grouping, filtering and
    sorting are done on arrays."""
    qs = candidate_list(user=user, status=CandidateStatus.PENDING).order_by("created_at", "pk")
    sql, params = qs.values_list("pk", "left_id", "right_id", "score").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    table = np.array(rows, dtype=np.float64).reshape(-1, 4)
    pk, left, right = (table[:, i].astype(np.int64) for i in range(3))
    score = table[:, 3]
    age = np.arange(len(pk))  # rows come oldest first
    label = _components(left, right)
    if filters == ReviewFilters():
        wanted = np.ones(len(pk), dtype=bool)
    else:
        sql, params = (
            candidates_filtered(user=user, filters=filters).order_by().values_list("pk").query.sql_with_params()
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            wanted = np.isin(pk, np.array([r[0] for r in cursor.fetchall()], dtype=np.int64))
    by_group = np.lexsort((pk, label))
    pk, left, right, score, age, label, wanted = (a[by_group] for a in (pk, left, right, score, age, label, wanted))
    if len(pk):
        starts = np.concatenate([[0], np.flatnonzero(np.diff(label)) + 1])
        ends = np.concatenate([starts[1:], [len(pk)]])
        best = np.maximum.reduceat(score, starts)
        oldest = np.minimum.reduceat(age, starts)
        kept = np.flatnonzero(np.add.reduceat(wanted.astype(np.int64), starts) > 0)
    else:
        starts = ends = best = oldest = kept = np.empty(0, dtype=np.int64)
    first_pk = pk[starts] if len(pk) else starts
    if sort == "score":
        order = np.lexsort((first_pk[kept], best[kept]))
    elif sort == "age":
        order = np.lexsort((first_pk[kept], oldest[kept]))
    elif sort == "-age":
        order = np.lexsort((first_pk[kept], -oldest[kept]))
    else:
        order = np.lexsort((first_pk[kept], -best[kept]))
    return ReviewItems(pk, left, right, score, starts, ends, kept[order])


def review_items_load(items: list[ReviewItem]) -> list[ReviewItem]:
    """Fill the candidates (with both customers and the assignee) of a page of items."""
    ids = [pk for item in items for pk in item.candidate_ids]
    loaded = {c.pk: c for c in MatchCandidate.objects.filter(pk__in=ids).select_related("left", "right", "assignee")}
    for item in items:
        item.candidates = [loaded[pk] for pk in item.candidate_ids if pk in loaded]
        if item.candidates and item.created_at is None:
            item.created_at = min(c.created_at for c in item.candidates)
    return items


CLUSTER_LIMIT = 200  # customers; a runaway chain is shown in part rather than read whole


def cluster_of(*, user, candidate: MatchCandidate) -> ReviewItem:  # noqa: ANN001
    """The queue item a pending candidate belongs to (itself alone when it is not pending),
    found by walking pending candidates outward from its two customers — a few indexed
    queries, not a pass over the whole queue."""
    rows = {candidate.pk: (candidate.left_id, candidate.right_id, candidate.score, candidate.created_at)}
    customers = {candidate.left_id, candidate.right_id}
    if candidate.status == CandidateStatus.PENDING:
        pending = candidate_list(user=user, status=CandidateStatus.PENDING).order_by()
        frontier = set(customers)
        while frontier and len(customers) < CLUSTER_LIMIT:
            found = pending.filter(Q(left_id__in=frontier) | Q(right_id__in=frontier)).values_list(
                "pk", "left_id", "right_id", "score", "created_at"
            )
            frontier = set()
            for pk, left, right, score, created in found:
                if pk in rows:
                    continue
                rows[pk] = (left, right, score, created)
                frontier |= {left, right} - customers
                customers |= {left, right}
    item = ReviewItem(
        candidate_ids=sorted(rows),
        customer_ids=sorted(customers),
        score=max(r[2] for r in rows.values()),
        created_at=min(r[3] for r in rows.values()),
    )
    return review_items_load([item])[0]


def review_candidates_get(*, user, ids: list[int]) -> list[MatchCandidate]:  # noqa: ANN001
    """Candidates by id that the user may reach (any status), in id order."""
    return list(candidate_list(user=user).filter(pk__in=ids).select_related("decided_by").order_by("pk"))


def pending_count() -> int:
    """The navigation's figure: one indexed count, no row scoping (only stewards see it)."""
    return MatchCandidate.objects.filter(status=CandidateStatus.PENDING).count()


def reviewers() -> QuerySet:
    """Users a candidate can be assigned to: active stewards and admins."""
    return (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(groups__name__in=[Role.STEWARD, Role.ADMIN]) | Q(is_superuser=True))
        .distinct()
        .order_by("username")
    )


def queue_sources() -> list[str]:
    from crmhub.models import Source

    return list(Source.objects.order_by("code").values_list("code", flat=True))


def queue_rules() -> list[str]:
    """Rule names for the filter: the rules table (small), not a DISTINCT over the queue."""
    from dedup.models import MatchRule

    return list(MatchRule.objects.order_by("name").values_list("name", flat=True))


def _text(policy, name: str, value) -> str:  # noqa: ANN001
    """A value as the policy presents it, as text."""
    return value_as_text(policy.present(name, value))


def item_summary(*, user, item: ReviewItem, fields: tuple[str, ...] = ("full_name", "mobile", "email")) -> dict:  # noqa: ANN001
    """What a queue row shows of an item's customers (through the field policy) and the
    versions it showed them at (bulk decisions check them)."""
    policy = policy_for(user)
    customers = {}
    for c in item.candidates:
        customers[c.left_id] = c.left
        customers[c.right_id] = c.right
    shown = [n for n in fields if policy(n) > Access.HIDDEN]
    return {
        "customers": [
            {"id": pk, "values": [_text(policy, n, customers[pk].get_value(n)) for n in shown]}
            for pk in item.customer_ids
            if pk in customers
        ],
        "versions": ",".join(f"{pk}:{customers[pk].version}" for pk in item.customer_ids if pk in customers),
        "assignees": sorted({c.assignee.get_username() for c in item.candidates if c.assignee_id}),
        "rules": sorted({c.rule for c in item.candidates if c.rule}),
        "reasons": sorted({c.reason for c in item.candidates if c.reason}),
    }


def compare_view(*, user, customers: list[Customer], candidates: list[MatchCandidate], survivor_id: int) -> dict:  # noqa: ANN001
    """Everything the compare-and-merge screen shows, presented through the field policy:
    per field the customers' values (masked or left out as the user may see them), whether
    they differ, survivorship's proposal with its reason, the matcher's explanation of that
    field, and whether the user may choose or type a value."""
    from dedup.survivorship import CHOSEN_FIELDS, golden_values_propose

    policy = policy_for(user)
    proposals = golden_values_propose(customers, survivor_id=survivor_id)
    explained: dict[str, list[dict]] = {}
    for c in candidates:
        for item in c.explanation or []:
            for name in item.get("fields", []):
                explained.setdefault(name, []).append(
                    {
                        "pair": f"#{c.left_id} ~ #{c.right_id}",
                        "comparison": item.get("comparison"),
                        "level": item.get("level"),
                        "weight": item.get("weight"),
                    }
                )
    rows = []
    for name in policy.visible_fields():
        access = policy(name)
        raw = [c.get_value(name) for c in customers]
        distinct = {value_as_text(v) for v in raw if v not in (None, "", [])}
        proposal = proposals.get(name)
        chosen = name in CHOSEN_FIELDS
        rows.append(
            {
                "field": name,
                "label": policy.fields[name].label,
                "cells": [
                    {
                        "customer": c.pk,
                        "text": _text(policy, name, v),
                        "blank": v in (None, "", []),
                        "proposed": bool(proposal and proposal.customer_id == c.pk),
                    }
                    for c, v in zip(customers, raw, strict=True)
                ],
                "differs": len(distinct) > 1,
                "all_blank": not distinct,
                "chosen": chosen,
                "editable": chosen and access >= Access.EDITABLE,
                "proposal": proposal,
                "proposal_text": _text(policy, name, proposal.value) if proposal else "",
                "explanation": explained.get(name, []),
            }
        )
    return {"rows": rows, "proposals": proposals}


def source_records_of(customer_ids: list[int]) -> dict[int, list[dict]]:
    """Each customer's source records (source and key): what moves to the survivor."""
    out: dict[int, list[dict]] = {pk: [] for pk in customer_ids}
    for cid, code, name, key, seen in (
        SourceRecord.objects.filter(customer_id__in=customer_ids)
        .order_by("customer_id", "source__code", "source_key")
        .values_list("customer_id", "source__code", "source__name", "source_key", "last_seen_at")
    ):
        out[cid].append({"source": code, "source_name": name, "key": key, "last_seen_at": seen})
    return out
