"""Reads of the core domain. Every selector takes the acting user and returns rows
already restricted to what that user may reach."""

from __future__ import annotations

import re
from datetime import timedelta

from django.conf import settings
from django.db.models import Prefetch, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from accounts.crypto import blind_index_candidates
from accounts.permissions import restrict_customers
from accounts.policy import may_search
from crmhub.choices import CustomerStatus
from crmhub.models import Customer, Interaction, SourceRecord, WorkerHeartbeat
from imports.cleaning import clean_email, clean_id_number, normalize_mobile

_PHONE_LIKE = re.compile(r"^[\s+\-().\d]{7,}$")
_ID_LIKE = re.compile(r"^\d{15}$|^\d{17}[\dXx]$")


def customer_list(*, user) -> QuerySet[Customer]:  # noqa: ANN001
    return restrict_customers(Customer.objects.active(), user)


def customer_search(*, user, q: str) -> QuerySet[Customer]:  # noqa: ANN001
    """Customers matching ``q``: a mobile in any format, an email, an ID number, a member
    number, a name (characters or pinyin) or a company.

    A user can only search by fields they may see at least masked, and only exactly by
    fields they see masked, so a search can never reveal more than the page would.
    """
    qs = customer_list(user=user)
    q = (q or "").strip()
    if not q:
        return qs
    # Every lookup below is gated by accounts.policy.may_search (SEARCH_LOOKUPS lists them):
    # exact lookups need the field at least masked, substring/prefix lookups need it visible.
    conditions = Q(pk__in=[])

    if _PHONE_LIKE.match(q):
        mobile = normalize_mobile(q)
        if mobile:
            if may_search(user, "mobile"):
                conditions |= Q(mobile=mobile)
            if may_search(user, "phone"):
                conditions |= Q(phone=mobile)
    if "@" in q and may_search(user, "email"):
        email = clean_email(q)
        if not email.flag:
            conditions |= Q(email=email.value)
    if _ID_LIKE.match(q) and may_search(user, "id_number"):
        conditions |= Q(id_number_hash__in=blind_index_candidates(clean_id_number(q).value))
    if may_search(user, "member_no"):
        conditions |= Q(member_no=q)
    if may_search(user, "full_name", partial=True) and len(q) >= 2:
        conditions |= Q(full_name__icontains=q)
        if q.isascii():
            conditions |= Q(name_pinyin__startswith=re.sub(r"\s+", "", q.lower()))
    elif may_search(user, "full_name"):
        # Someone who sees names masked may find a person by the exact name, not by a prefix.
        conditions |= Q(full_name=q)
    if may_search(user, "company", partial=True) and len(q) >= 2:
        conditions |= Q(company__icontains=q)
    return qs.filter(conditions)


def customer_get(*, user, pk: int) -> Customer:  # noqa: ANN001
    """A customer ``user`` may reach, following tombstones to the survivor; 404 otherwise."""
    qs = restrict_customers(Customer.objects.all(), user)
    seen: set[int] = set()
    while True:
        customer = qs.filter(pk=pk).first()
        if customer is None:
            raise Http404("No such customer")
        if customer.status != CustomerStatus.MERGED or customer.merged_into_id is None or pk in seen:
            return customer
        seen.add(pk)
        pk = customer.merged_into_id


def customer_detail_related(*, customer: Customer, interactions_limit: int = 200) -> dict:
    records = list(
        SourceRecord.objects.filter(customer=customer).select_related("source").order_by("source__code", "source_key")
    )
    interactions = list(
        Interaction.objects.filter(customer=customer)
        .select_related("source")
        .order_by("-occurred_at", "-id")[:interactions_limit]
    )
    return {"source_records": records, "interactions": interactions}


def workers_alive() -> list[WorkerHeartbeat]:
    cutoff = timezone.now() - timedelta(seconds=3 * settings.CRMHUB_WORKER_HEARTBEAT_SECONDS)
    return list(WorkerHeartbeat.objects.filter(last_seen__gte=cutoff))


def home_counts(*, user) -> dict:  # noqa: ANN001
    from crmhub.models import Source
    from dedup.choices import CandidateStatus
    from dedup.models import MatchCandidate
    from imports.models import ImportRun

    return {
        "customers": customer_list(user=user).count(),
        "sources": Source.objects.filter(is_active=True).count(),
        "pending_reviews": MatchCandidate.objects.filter(status=CandidateStatus.PENDING).count(),
        "recent_runs": list(ImportRun.objects.select_related("source").order_by("-created_at")[:8]),
    }


def source_records_prefetch() -> Prefetch:
    return Prefetch("source_records", queryset=SourceRecord.objects.select_related("source"))
