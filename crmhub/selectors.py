"""Reads of the core domain. Every selector takes the acting user and returns rows
already restricted to what that user may reach."""

from __future__ import annotations

import re
from datetime import timedelta

from django.conf import settings
from django.core.paginator import Page, Paginator
from django.db import connection
from django.db.models import Case, Count, F, IntegerField, Lookup, Max, Prefetch, Q, QuerySet, Sum, Value, When
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.crypto import blind_index_candidates
from accounts.permissions import restrict_customers
from accounts.policy import may_search
from crmhub.choices import ChangeChannel, CustomerStatus, InteractionKind
from crmhub.models import Customer, Interaction, SourceRecord, WorkerHeartbeat
from imports.cleaning import clean_email, clean_id_number, normalize_mobile

_PHONE_LIKE = re.compile(r"^[\s+\-().\d]{7,}$")
_ID_LIKE = re.compile(r"^\d{15}$|^\d{17}[\dXx]$")


def customer_list(*, user) -> QuerySet[Customer]:  # noqa: ANN001
    return restrict_customers(Customer.objects.active(), user)


# At most this many customers come back from a search, best first: enough to find a person,
# few enough that every step of the search stays an index lookup with a LIMIT at 1M customers.
SEARCH_LIMIT = 200
# Ranks, best first: identity hits, then the name exactly, then sound-alikes and so on.
RANK_IDENTITY = 0
RANK_NAME = 10
RANK_SOUNDALIKE = 20  # the same pinyin: 章伟 for 张伟, "zhangwei" for either
RANK_PREFIX = 30  # the name starts so (characters, or their pinyin)
RANK_SOUNDALIKE_PREFIX = 35  # the pinyin starts so: "zhangw", 章 for 张伟
RANK_PART = 40  # part of the name
RANK_FUZZY = 50  # pinyin confusions (zh/z, n/l, ang/an...)
RANK_TYPO = 55  # pinyin one keyboard slip away
RANK_COMPANY = 80
_HAS_DIGIT_OR_AT = re.compile(r"[\d@]")


def customer_search(*, user, q: str, ranked: bool = True) -> QuerySet[Customer]:  # noqa: ANN001
    """Customers matching ``q``: a mobile in any format, an email, an ID number or a member number,
    a name in characters or pinyin (exact, sound-alike characters through the same pinyin, prefix,
    part, pinyin confusions and typos) or a company.

    Ranked (the default; pages and the API): at most ``SEARCH_LIMIT`` customers, best first,
    annotated ``search_rank`` (lower is better, see the RANK_ constants). Unranked (exports of a
    search): every customer matching any of the same lookups, in no particular order.

    A user can only search by fields they may see at least masked, and only exactly by
    fields they see masked, so a search can never reveal more than the page would.
    """
    qs = customer_list(user=user)
    q = (q or "").strip()
    if not q:
        return qs
    steps = _search_steps(user, q)
    if not ranked:
        condition = Q(pk__in=[])
        for _rank, step in steps:
            condition |= step
        return qs.filter(condition)
    ranks: dict[int, int] = {}
    for rank, condition in steps:
        if len(ranks) >= SEARCH_LIMIT:
            break
        # No ORDER BY: each step stops at the LIMIT instead of sorting every match.
        for pk in qs.filter(condition).values_list("pk", flat=True).order_by()[:SEARCH_LIMIT]:
            ranks.setdefault(pk, rank)
    if not ranks:
        return qs.none()
    by_rank: dict[int, list[int]] = {}
    for pk, rank in ranks.items():
        by_rank.setdefault(rank, []).append(pk)
    rank_expr = Case(
        *[When(pk__in=pks, then=Value(rank)) for rank, pks in sorted(by_rank.items())],
        default=Value(99),
        output_field=IntegerField(),
    )
    return qs.filter(pk__in=list(ranks)).annotate(search_rank=rank_expr).order_by("search_rank", "-id")


def search_rank_label(rank: int | None) -> str:
    """Why a search result matched, for the result list."""
    if rank is None:
        return ""
    for limit, label in (
        (RANK_IDENTITY, _("mobile, email, ID or member no.")),
        (RANK_NAME, _("name")),
        (RANK_SOUNDALIKE, _("name sounds alike")),
        (RANK_SOUNDALIKE_PREFIX, _("name starts so")),
        (RANK_PART, _("part of the name")),
        (RANK_TYPO, _("similar name")),
    ):
        if rank <= limit:
            return str(label)
    return str(_("company"))


def _search_steps(user, q: str) -> list[tuple[int, Q]]:  # noqa: ANN001
    """The lookups of a search, best rank first.

    Every lookup is gated by accounts.policy.may_search (SEARCH_LOOKUPS lists them): exact lookups
    need the field at least masked; prefix, part, pinyin and fuzzy lookups need it visible (a
    sound-alike or a typo is not the value the user already knows).

    Each is an index lookup at scale: equality and ranges (prefixes) on the btree of
    ``name_pinyin``, parts through the pg_trgm GIN indexes on PostgreSQL (which need three
    characters, a trigram; a name's two characters are found through their pinyin), pinyin
    confusions and typos as a list of exact spellings (crmhub.pinyin).
    """
    from crmhub.pinyin import confusion_variants, typo_variants
    from imports.cleaning.names import clean_name, name_pinyin

    steps = [(RANK_IDENTITY, _identity_condition(user, q))]
    if "@" in q or _PHONE_LIKE.match(q) or _ID_LIKE.match(re.sub(r"[\s-]", "", q)):
        return steps  # a mobile, an email or an ID number: nothing else is written like that
    if not _HAS_DIGIT_OR_AT.search(q):
        name = clean_name(q).value or q  # full-width folded, traditional characters simplified
        if may_search(user, "full_name", partial=True):
            steps.append((RANK_NAME, Q(full_name=name)))
            pinyin = name_pinyin(name)
            if not (pinyin.isascii() and pinyin.isalpha()):
                pinyin = ""
            typed_pinyin = name.isascii()
            if pinyin:
                # 章伟 finds 张伟: the same pinyin. Pinyin typed in Latin letters finds the characters.
                steps.append((RANK_SOUNDALIKE, Q(name_pinyin=pinyin)))
                if not typed_pinyin:
                    steps.append((RANK_PREFIX, _pinyin_prefix(pinyin) & Q(full_name__startswith=name)))
                steps.append((RANK_SOUNDALIKE_PREFIX, _pinyin_prefix(pinyin)))
            if len(name) >= 2:
                if len(name) >= _min_part():
                    steps.append((RANK_PART, _contains("full_name", name)))
                elif len(pinyin) >= 3 and not typed_pinyin:
                    # Two characters (阳娜 in 欧阳娜娜) hold no trigram of their own: find them through
                    # the pinyin's trigrams, then check the characters.
                    steps.append((RANK_PART, _contains("name_pinyin", pinyin) & Q(full_name__contains=name)))
                if typed_pinyin and len(pinyin) >= 4:
                    steps.append((RANK_PART, _contains("name_pinyin", pinyin)))
            if len(pinyin) >= 4:
                steps.append((RANK_FUZZY, Q(name_pinyin__in=sorted(confusion_variants(pinyin)))))
                steps.append((RANK_TYPO, Q(name_pinyin__in=sorted(typo_variants(pinyin)))))
        elif may_search(user, "full_name"):
            # Someone who sees names masked may find a person by the exact name, nothing looser.
            steps.append((RANK_NAME, Q(full_name=name)))
    if may_search(user, "company", partial=True) and len(q) >= _min_part():
        steps.append((RANK_COMPANY, _contains("company", q)))
    return steps


def _pinyin_prefix(pinyin: str) -> Q:
    """Pinyin (lowercase a-z) starting with ``pinyin``, as a range the btree index serves whatever
    the database's collation (LIKE 'x%' would need the C collation or a pattern operator class)."""
    return Q(name_pinyin__gte=pinyin, name_pinyin__lte=pinyin + "z" * 40)


def _identity_condition(user, q: str) -> Q:  # noqa: ANN001
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
    compact = re.sub(r"[\s-]", "", q)
    if _ID_LIKE.match(compact) and may_search(user, "id_number"):
        conditions |= Q(id_number_hash__in=blind_index_candidates(clean_id_number(compact).value))
    if may_search(user, "member_no"):
        conditions |= Q(member_no__in={q, q.upper()})
    return conditions


def _min_part() -> int:
    return 3 if connection.vendor == "postgresql" else 2


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _contains(field: str, text: str) -> Q:
    if connection.vendor == "postgresql":
        # ILIKE, which the pg_trgm GIN index of the column serves (Django's icontains wraps the
        # column in UPPER(), which it does not).
        return Q(ILike(F(field), f"%{_like_escape(text)}%"))
    return Q(**{f"{field}__icontains": text})


def _prefix(field: str, text: str) -> Q:
    if connection.vendor == "postgresql":
        return Q(ILike(F(field), f"{_like_escape(text)}%"))
    return Q(**{f"{field}__istartswith": text})


class ILike(Lookup):
    """``lhs ILIKE rhs`` (a pattern the caller built and escaped); PostgreSQL only."""

    lookup_name = "ilike"

    def as_sql(self, compiler, connection):  # noqa: ANN001, ANN201
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} ILIKE {rhs}", [*lhs_params, *rhs_params]


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


def customer_source_records(*, customer: Customer) -> list[SourceRecord]:
    return list(
        SourceRecord.objects.filter(customer=customer).select_related("source").order_by("source__code", "source_key")
    )


def customer_detail_related(*, customer: Customer, interactions_limit: int = 200) -> dict:
    records = customer_source_records(customer=customer)
    interactions = list(
        Interaction.objects.filter(customer=customer)
        .select_related("source")
        .order_by("-occurred_at", "-id")[:interactions_limit]
    )
    return {"source_records": records, "interactions": interactions}


#
# The 360° page
#

TIMELINE_PAGE_SIZE = 50


def customer_timeline(
    *,
    customer: Customer,
    kinds: list[str] | None = None,
    page: int | str | None = 1,
    per_kind: dict[str, int] | None = None,
) -> Page:
    """One page of the customer's interactions across channels, newest first, optionally only
    of some ``kinds`` (order, ticket, visit, call, ...); served by the (customer, -occurred_at) index.
    ``per_kind`` (counts from ``customer_summary``) spares the count query."""
    qs = Interaction.objects.filter(customer=customer)
    valid = [k for k in (kinds or []) if k in InteractionKind.values]
    if valid:
        qs = qs.filter(kind__in=valid)
    qs = qs.select_related("source").order_by("-occurred_at", "-id")
    paginator = Paginator(qs, TIMELINE_PAGE_SIZE)
    if per_kind is not None:
        paginator.count = sum(n for k, n in per_kind.items() if not valid or k in valid)
    return paginator.get_page(page)


def customer_summary(*, customer: Customer) -> dict:
    """Interaction counts per kind, order totals and the derived segments of a customer
    (segments are computed from the timeline and the tags, not stored)."""
    # One grouped pass over the customer's interactions (the timeline index) for every figure.
    rows = (
        Interaction.objects.filter(customer=customer)
        .order_by()
        .values("kind")
        .annotate(
            n=Count("id"),
            last=Max("occurred_at"),
            orders_total=Sum("amount", filter=Q(kind=InteractionKind.ORDER)),
            recent_orders=Count(
                "id", filter=Q(kind=InteractionKind.ORDER, occurred_at__gte=timezone.now() - timedelta(days=90))
            ),
        )
    )
    per_kind: dict[str, int] = {}
    totals: dict = {"last": None, "orders_total": None, "recent_orders": 0}
    for row in rows:
        per_kind[row["kind"]] = row["n"]
        if row["last"] is not None and (totals["last"] is None or row["last"] > totals["last"]):
            totals["last"] = row["last"]
        if row["orders_total"] is not None:
            totals["orders_total"] = (totals["orders_total"] or 0) + row["orders_total"]
        totals["recent_orders"] += row["recent_orders"]
    segments = []
    if totals["orders_total"] is not None and totals["orders_total"] >= HIGH_VALUE_TOTAL:
        segments.append(("high_value", _("High value")))
    if totals["recent_orders"]:
        segments.append(("active_buyer", _("Bought in the last 90 days")))
    if totals["last"] is not None and totals["last"] < timezone.now() - timedelta(days=365):
        segments.append(("lapsed", _("No contact for a year")))
    if customer.created_at >= timezone.now() - timedelta(days=30):
        segments.append(("new", _("New in the last 30 days")))
    kinds = [(value, label, per_kind.get(value, 0)) for value, label in InteractionKind.choices]
    return {
        "kinds": kinds,
        "per_kind": per_kind,
        "interactions_total": sum(per_kind.values()),
        "orders_total": totals["orders_total"],
        "last_interaction": totals["last"],
        "segments": segments,
    }


# Order amounts (CNY) from which a customer counts as high value.
HIGH_VALUE_TOTAL = 10_000


def customer_merges(*, customer: Customer, refs: list[str] | None = None) -> list:
    """Merges and unmerges that affected the customer: where it survived, and every merge named
    by its history (merged away, given back by an unmerge), newest first. ``refs``: the change
    references of its history when the caller has them already."""
    from dedup.models import Merge

    if refs is None:
        refs = list(
            customer.history.filter(change_channel__in=[ChangeChannel.MERGE, ChangeChannel.UNMERGE])
            .exclude(change_ref="")
            .values_list("change_ref", flat=True)
        )
    ids = {int(ref.split(":", 1)[1]) for ref in refs if re.fullmatch(r"merge:\d+", ref)}
    return list(
        Merge.objects.filter(Q(survivor_id=customer.pk) | Q(pk__in=ids))
        .select_related("acting_user", "undone_by")
        .order_by("-created_at", "-id")[:50]
    )


def customer_quality_flags(*, customer: Customer, records: list[SourceRecord]) -> list[dict]:
    """The customer's data-quality flags: its own and the validation flags of its source
    records, as ``{"field", "reason", "source"}`` (field names, never values)."""
    flags = [
        {"field": name, "reason": reason if isinstance(reason, str) else "", "source": None}
        for name, reason in (customer.quality_flags or {}).items()
    ]
    for record in records:
        for name, reason in (record.flags or {}).items():
            flags.append({"field": name, "reason": str(reason), "source": record.source})
    return flags


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
