"""Reads of duplicate detection: candidate queues restricted to the user, explanations
presented through the field policy, and the CSV exports."""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass, field
from typing import IO, Any

from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.permissions import restrict_customers
from accounts.policy import Access, policy_for, value_as_text
from accounts.roles import Role
from crmhub.choices import CustomerStatus
from crmhub.models import Customer, SourceRecord
from dedup.choices import CandidateStatus
from dedup.clusters import clusters_heal, components
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


def candidates_filtered(*, user, filters: ReviewFilters, paged: bool = False) -> QuerySet[MatchCandidate]:  # noqa: ANN001
    """``candidate_list`` narrowed by ``filters`` (source, rule, score, age, assignee). ``paged``:
    the caller reads a LIMIT of rows in index order and never counts them all (the queue)."""
    qs = candidate_list(user=user, status=filters.status)
    if filters.source and paged:
        # One correlated probe per candidate read (a nested-loop semi-join that stops with the
        # LIMIT): 1 ms for a page at 100k pending, where hashing the source's customers costs
        # ~150 ms whatever the page.
        qs = qs.filter(
            Exists(
                SourceRecord.objects.filter(source__code=filters.source).filter(
                    Q(customer_id=OuterRef("left_id")) | Q(customer_id=OuterRef("right_id"))
                )
            )
        )
    elif filters.source:
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


# The grouping itself lives with the maintenance of the stored clusters.
_components = components

QUEUE_COUNT_LIMIT = 1_000  # items (50 pages); past it the page says "more than" instead of counting the backlog


class ReviewItems:
    """The queue's items in order, read a page at a time: slicing runs one indexed query for
    the page's cluster keys (filters, sort, LIMIT/OFFSET over the stored clusters) and one for
    their candidates; ``count()`` counts clusters up to ``QUEUE_COUNT_LIMIT`` (+1, so a page
    can say "more than"). Nothing reads the whole backlog."""

    def __init__(self, *, user, filtered: QuerySet, sort: str) -> None:  # noqa: ANN001
        self._user = user
        self._filtered = filtered
        self._sort = sort if sort in SORTS else "-score"
        self._count: int | None = None

    def _keys(self) -> QuerySet:
        # Ties follow the sort's direction (the index is read forwards or backwards).
        column, order = {
            "-score": ("cluster_score", ("-cluster_score", "cluster")),
            "score": ("cluster_score", ("cluster_score", "-cluster")),
            "age": ("cluster_created", ("cluster_created", "cluster")),
            "-age": ("cluster_created", ("-cluster_created", "-cluster")),
        }[self._sort]
        return self._filtered.order_by(*order).values_list("cluster", column).distinct()

    def count(self) -> int:
        if self._count is None:
            keys = self._filtered.order_by("cluster").values("cluster").distinct()
            self._count = keys[: QUEUE_COUNT_LIMIT + 1].count()
        return self._count

    @property
    def more_than_counted(self) -> bool:
        return self.count() > QUEUE_COUNT_LIMIT

    def __len__(self) -> int:
        return self.count()

    def _items(self, keys: list[int]) -> list[ReviewItem]:
        if not keys:
            return []
        members: dict[int, list[tuple]] = {k: [] for k in keys}
        rows = (
            candidate_list(user=self._user, status=CandidateStatus.PENDING)
            .filter(cluster__in=keys)
            .order_by()
            .values_list("cluster", "pk", "left_id", "right_id", "score", "cluster_created")
        )
        for row in rows:
            members[row[0]].append(row)
        items = []
        for k in keys:
            group = members[k]
            if not group:
                continue  # decided between the two queries
            items.append(
                ReviewItem(
                    candidate_ids=sorted(r[1] for r in group),
                    customer_ids=sorted({r[2] for r in group} | {r[3] for r in group}),
                    score=max(r[4] for r in group),
                    created_at=group[0][5],
                )
            )
        return items

    def __getitem__(self, index):  # noqa: ANN001, ANN204
        if isinstance(index, slice):
            return self._items([k for k, _v in self._keys()[index]])
        found = self[index : index + 1]
        if not found:
            raise IndexError(index)
        return found[0]

    def __iter__(self):  # noqa: ANN204
        return iter(self._items([k for k, _v in self._keys()]))


def review_items(*, user, filters: ReviewFilters, sort: str = "-score") -> ReviewItems:  # noqa: ANN001
    """The pending queue as items: clusters of pending candidates sharing customers (kept on
    the candidates by ``dedup.clusters``, so a filter never splits a cluster), kept when at
    least one of their candidates passes ``filters``, sorted by best score or by oldest
    proposal. Lazy: the page asked for is read, not the backlog."""
    clusters_heal()
    # Only pending candidates carry a current cluster (decided ones keep their last key).
    filtered = candidates_filtered(user=user, filters=filters, paged=True).filter(status=CandidateStatus.PENDING)
    return ReviewItems(user=user, filtered=filtered, sort=sort)


def review_items_load(items: list[ReviewItem]) -> list[ReviewItem]:
    """Fill the candidates (with both customers and the assignee) of a page of items."""
    ids = [pk for item in items for pk in item.candidate_ids]
    loaded = {c.pk: c for c in MatchCandidate.objects.filter(pk__in=ids).select_related("left", "right", "assignee")}
    for item in items:
        item.candidates = [loaded[pk] for pk in item.candidate_ids if pk in loaded]
        if item.candidates and item.created_at is None:
            item.created_at = min(c.created_at for c in item.candidates)
    return items


CLUSTER_LIMIT = 200  # candidates; a runaway chain is shown in part rather than read whole


def cluster_of(*, user, candidate: MatchCandidate) -> ReviewItem:  # noqa: ANN001
    """The queue item a pending candidate belongs to (itself alone when it is not pending):
    the pending candidates of its stored cluster, one indexed query."""
    rows = {candidate.pk: (candidate.left_id, candidate.right_id, candidate.score, candidate.created_at)}
    if candidate.status == CandidateStatus.PENDING:
        if candidate.cluster is None:
            clusters_heal()
            candidate.refresh_from_db(fields=["cluster"])
        found = (
            candidate_list(user=user, status=CandidateStatus.PENDING)
            .filter(cluster=candidate.cluster)
            .order_by("pk")
            .values_list("pk", "left_id", "right_id", "score", "created_at")[:CLUSTER_LIMIT]
        )
        for pk, left, right, score, created in found:
            rows[pk] = (left, right, score, created)
    item = ReviewItem(
        candidate_ids=sorted(rows),
        customer_ids=sorted({r[0] for r in rows.values()} | {r[1] for r in rows.values()}),
        score=max(r[2] for r in rows.values()),
        created_at=min(r[3] for r in rows.values()),
    )
    return review_items_load([item])[0]


def review_candidates_get(*, user, ids: list[int]) -> list[MatchCandidate]:  # noqa: ANN001
    """Candidates by id that the user may reach (any status), in id order."""
    return list(candidate_list(user=user).filter(pk__in=ids).select_related("decided_by").order_by("pk"))


PENDING_COUNT_LIMIT = 9_999  # the navigation says "9999+" rather than count a larger backlog


def pending_count() -> int:
    """The navigation's figure: pending candidates, counted up to ``PENDING_COUNT_LIMIT`` + 1
    through the partial queue index (no row scoping: only stewards see it)."""
    pending = MatchCandidate.objects.filter(status=CandidateStatus.PENDING).order_by().values("pk")
    return pending[: PENDING_COUNT_LIMIT + 1].count()


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
