"""Reads of duplicate detection: candidate queues restricted to the user, explanations
presented through the field policy, and the CSV exports."""

from __future__ import annotations

import csv
from typing import IO

from django.db.models import Exists, OuterRef, QuerySet

from accounts.permissions import restrict_customers
from accounts.policy import Access, policy_for
from crmhub.choices import CustomerStatus
from crmhub.models import Customer, SourceRecord
from dedup.choices import CandidateStatus
from dedup.models import MatchCandidate, Merge


def candidate_list(*, user, status: str = "") -> QuerySet[MatchCandidate]:  # noqa: ANN001
    """Candidates whose two customers the user may both reach."""
    visible = restrict_customers(Customer.objects.all(), user)
    qs = MatchCandidate.objects.filter(
        Exists(visible.filter(pk=OuterRef("left_id"))), Exists(visible.filter(pk=OuterRef("right_id")))
    ).select_related("left", "right")
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
