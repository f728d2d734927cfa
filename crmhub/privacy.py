"""Data-subject requests (PIPL): find everything held about a person, export it, erase it.

A person is found by mobile (any format: it is normalized as imports normalize it), e-mail
or ID number (through its blind index, the column itself being encrypted). The search
reaches golden records (tombstones merged into them included, and the survivor a found
tombstone was merged into), their source records and any source record whose normalized
mobile or e-mail matches, their interactions and the history of all of them.

Erasure (or anonymization, which keeps coarse, non-identifying attributes) runs in one
transaction: golden record values blanked and the status set to ``erased``; source records'
raw and normalized values; interactions' personal details; the personal columns of the
historical rows of all three; the data of earlier change-feed events; and values copied
into merge snapshots, match explanations and import reports. The change feed gets an
``erased`` event per golden record in the same transaction. Every step writes an
``AuditEvent`` with ids and counts, never a personal value.

Handled only by admins and holders of ``crmhub.handle_privacy_requests``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.crypto import CIPHERTEXT_PREFIX, blind_index, blind_index_candidates, decrypt, unseal_values
from accounts.roles import Role, user_roles
from crmhub.choices import ChangeChannel, ChangeEventType, CustomerStatus, PrivacyRequestKind
from crmhub.context import change_context
from crmhub.models import ChangeEvent, Customer, ErasedKey, Interaction, PrivacyRequest, SourceRecord

PERMISSION = "crmhub.handle_privacy_requests"

# Kept by anonymization: attributes that do not identify a person on their own.
ANONYMIZE_KEEPS = ("gender", "province", "city", "country", "tags", "consent_marketing", "consent_sms", "consent_email")
_NULL_FIELDS = {"birth_date", "consent_marketing", "consent_sms", "consent_email"}
# Strings shorter than this are too common ("M", "CN", "上海") to be scrubbed from copies by value.
MIN_SCRUB_LENGTH = 4


class PrivacyInputError(ValueError):
    """An identifier that cannot be used; the message never repeats the value."""


def user_may_handle_privacy(user) -> bool:  # noqa: ANN001
    if user is None or not user.is_authenticated:
        return False
    return Role.ADMIN in user_roles(user) or user.has_perm(PERMISSION)


def _require(user) -> None:  # noqa: ANN001
    if not user_may_handle_privacy(user):
        raise PermissionDenied(_("Only administrators may handle data-subject requests."))


@dataclass
class Subject:
    """What is held about one person: ids only."""

    identifiers: list[str]
    customer_ids: list[int] = field(default_factory=list)
    source_record_ids: list[int] = field(default_factory=list)
    interaction_ids: list[int] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return {
            "customers": len(self.customer_ids),
            "source_records": len(self.source_record_ids),
            "interactions": len(self.interaction_ids),
        }


def _normalized_identifiers(mobile: str, email: str, id_number: str) -> dict[str, Any]:
    from imports.cleaning import clean_email, clean_id_number, normalize_mobile

    out: dict[str, Any] = {}
    if (mobile or "").strip():
        value = normalize_mobile(mobile)
        if value is None:
            raise PrivacyInputError(_("The mobile number is not a valid phone number."))
        out["mobile"] = value
    if (email or "").strip():
        cleaned = clean_email(email)
        if "@" not in cleaned.value:
            raise PrivacyInputError(_("The e-mail address is not valid."))
        out["email"] = cleaned.value
    if (id_number or "").strip():
        cleaned = clean_id_number(id_number)
        out["id_number"] = blind_index_candidates(cleaned.value)
    if not out:
        raise PrivacyInputError(_("Give a mobile number, an e-mail address or an ID number."))
    return out


def privacy_subject_find(*, user, mobile: str = "", email: str = "", id_number: str = "") -> Subject:  # noqa: ANN001
    _require(user)
    ids = _normalized_identifiers(mobile, email, id_number)
    customers = Q(pk__in=[])
    records = Q(pk__in=[])
    if "mobile" in ids:
        customers |= Q(mobile=ids["mobile"]) | Q(phone=ids["mobile"])
        records |= Q(normalized__mobile=ids["mobile"]) | Q(normalized__phone=ids["mobile"])
    if "email" in ids:
        customers |= Q(email=ids["email"])
        records |= Q(normalized__email=ids["email"])
    if "id_number" in ids:
        customers |= Q(id_number_hash__in=ids["id_number"])
    found = set(Customer.objects.filter(customers).values_list("pk", flat=True))
    record_ids = set(SourceRecord.objects.filter(records).values_list("pk", flat=True))
    found |= set(
        SourceRecord.objects.filter(pk__in=record_ids, customer__isnull=False).values_list("customer_id", flat=True)
    )
    # Follow merges both ways: tombstones merged into a found record hold the same person's
    # old values; a found tombstone's survivor holds their current ones.
    frontier = set(found)
    while frontier:
        linked = set(Customer.objects.filter(merged_into__in=frontier).values_list("pk", flat=True))
        linked |= {
            pk
            for pk in Customer.objects.filter(pk__in=frontier, merged_into__isnull=False).values_list(
                "merged_into_id", flat=True
            )
        }
        frontier = linked - found
        found |= frontier
    record_ids |= set(SourceRecord.objects.filter(customer__in=found).values_list("pk", flat=True))
    interaction_ids = set(Interaction.objects.filter(customer__in=found).values_list("pk", flat=True))
    return Subject(
        identifiers=sorted(ids),
        customer_ids=sorted(found),
        source_record_ids=sorted(record_ids),
        interaction_ids=sorted(interaction_ids),
    )


def _audit(
    *,
    user,
    kind: str,
    request_row: PrivacyRequest,
    request: HttpRequest | None,
    reason: str = "",  # noqa: ANN001
    details: dict | None = None,
) -> None:
    from accounts.services import audit_event_record

    audit_event_record(
        kind=kind,
        user=user,
        request=request,
        object_type="privacy_request",
        object_id=request_row.pk,
        reason=reason,
        details=details or {},
    )


def privacy_request_log(
    *,
    user,
    subject: Subject,
    kind: str,
    request: HttpRequest | None = None,  # noqa: ANN001
    reason: str = "",
) -> PrivacyRequest:
    """Record a search or an export of ``subject`` (ids and counts only)."""
    _require(user)
    with transaction.atomic():
        row = PrivacyRequest.objects.create(
            kind=kind,
            identifiers=subject.identifiers,
            customer_ids=subject.customer_ids,
            counts=subject.counts,
            reason=reason,
            acting_user=user,
        )
        _audit(
            user=user,
            kind=f"privacy_{kind}",
            request_row=row,
            request=request,
            reason=reason,
            details={"identifiers": subject.identifiers, "customers": subject.customer_ids, **subject.counts},
        )
    return row


#
# The report for the person
#


def privacy_report(*, user, subject: Subject) -> dict[str, Any]:  # noqa: ANN001
    """Everything held about the person, presented through accounts.policy for ``user``."""
    from accounts.history import present_customer_history
    from accounts.policy import present_customer, present_values

    _require(user)
    customers = []
    for customer in Customer.objects.filter(pk__in=subject.customer_ids).order_by("pk"):
        customers.append(
            {
                "id": customer.pk,
                "status": customer.status,
                "merged_into": customer.merged_into_id,
                "created_at": customer.created_at,
                "values": present_customer(user, customer),
                "history": [
                    {
                        "at": e["at"],
                        "channel": e.get("channel"),
                        "changes": [{"field": c["field"], "old": c["old"], "new": c["new"]} for c in e["changes"]],
                    }
                    for e in present_customer_history(user, customer)
                ],
            }
        )
    records = [
        {
            "id": r.pk,
            "source": r.source.code,
            "source_key": r.source_key,
            "customer": r.customer_id,
            "first_seen_at": r.first_seen_at,
            "last_seen_at": r.last_seen_at,
            "raw": present_values(user, r.raw),
            "normalized": present_values(user, r.normalized),
        }
        for r in SourceRecord.objects.filter(pk__in=subject.source_record_ids).select_related("source").order_by("pk")
    ]
    interactions = [
        {
            "id": i.pk,
            "customer": i.customer_id,
            "source": i.source.code if i.source else None,
            "kind": i.kind,
            "external_id": i.external_id,
            "occurred_at": i.occurred_at,
            "title": i.title,
            "status": i.status,
            "amount": i.amount,
            "currency": i.currency,
            "details": present_values(user, i.details),
        }
        for i in Interaction.objects.filter(pk__in=subject.interaction_ids).select_related("source").order_by("pk")
    ]
    return {
        "generated_at": timezone.now(),
        "identifiers": subject.identifiers,
        "customers": customers,
        "source_records": records,
        "interactions": interactions,
    }


def privacy_report_json(report: dict[str, Any]) -> bytes:
    return json.dumps(report, cls=DjangoJSONEncoder, ensure_ascii=False, indent=2).encode("utf-8")


def privacy_report_xlsx(report: dict[str, Any]) -> bytes:
    """One sheet per kind of record, one row per value; every cell formula-safe."""
    from openpyxl import Workbook

    from accounts.exports import safe_cell

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("customers")
    sheet.append(["customer", "status", "field", "value"])
    for c in report["customers"]:
        for name, value in c["values"].items():
            sheet.append([c["id"], safe_cell(c["status"]), safe_cell(name), safe_cell(value)])
    sheet = workbook.create_sheet("history")
    sheet.append(["customer", "at", "field", "old", "new"])
    for c in report["customers"]:
        for entry in c["history"]:
            for change in entry["changes"]:
                sheet.append(
                    [
                        c["id"],
                        safe_cell(entry["at"]),
                        safe_cell(change["field"]),
                        safe_cell(change["old"]),
                        safe_cell(change["new"]),
                    ]
                )
    sheet = workbook.create_sheet("source_records")
    sheet.append(["record", "source", "source_key", "customer", "part", "field", "value"])
    for r in report["source_records"]:
        for part in ("normalized", "raw"):
            for name, value in r[part].items():
                sheet.append(
                    [
                        r["id"],
                        safe_cell(r["source"]),
                        safe_cell(r["source_key"]),
                        r["customer"],
                        part,
                        safe_cell(name),
                        safe_cell(value),
                    ]
                )
    sheet = workbook.create_sheet("interactions")
    sheet.append(
        ["interaction", "customer", "source", "kind", "occurred_at", "title", "status", "amount", "currency", "details"]
    )
    for i in report["interactions"]:
        sheet.append(
            [
                i["id"],
                i["customer"],
                safe_cell(i["source"]),
                safe_cell(i["kind"]),
                safe_cell(i["occurred_at"]),
                safe_cell(i["title"]),
                safe_cell(i["status"]),
                safe_cell(i["amount"]),
                safe_cell(i["currency"]),
                safe_cell(json.dumps(i["details"], cls=DjangoJSONEncoder, ensure_ascii=False)),
            ]
        )
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


#
# Erasure
#


def _text(value: Any) -> str:  # noqa: ANN401
    if isinstance(value, str) and value.startswith(CIPHERTEXT_PREFIX):
        try:
            return decrypt(value)
        except Exception:  # noqa: BLE001 - an undecryptable value is no match
            return value
    return value if isinstance(value, str) else ""


def _personal_strings(customers: list[Customer], records: list[SourceRecord]) -> set[str]:
    """Every identifying text held about the person, to find copies of it elsewhere."""
    found: set[str] = set()

    def add(value: Any) -> None:  # noqa: ANN401
        if isinstance(value, dict):
            for v in value.values():
                add(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                add(v)
        elif value is not None and not isinstance(value, bool):
            text = str(value).strip()
            if len(text) >= MIN_SCRUB_LENGTH:
                found.add(text)
                if text.startswith("+86") and len(text) == 14:
                    found.add(text[3:])  # the national form of a mainland mobile

    for c in customers:
        for name in Customer.CORE_FIELDS:
            if name not in ANONYMIZE_KEEPS:
                add(getattr(c, name))
        add(unseal_values(c.custom))
    for r in records:
        add(unseal_values(r.raw))
        add(unseal_values(r.normalized))
    return found


def _scrub(value: Any, personal: set[str]) -> tuple[Any, bool]:  # noqa: ANN401
    """``value`` with every string that is or contains a personal text blanked."""
    if isinstance(value, dict):
        changed = False
        out = {}
        for k, v in value.items():
            out[k], c = _scrub(v, personal)
            changed |= c
        return out, changed
    if isinstance(value, list):
        items = [_scrub(v, personal) for v in value]
        return [v for v, _c in items], any(c for _v, c in items)
    if isinstance(value, str) and value:
        text = _text(value)
        if any(p in text for p in personal):
            return "", True
    return value, False


def _scrub_rows(qs, fields: list[str], personal: set[str]) -> int:  # noqa: ANN001
    changed_rows = []
    for obj in qs.only("pk", *fields):
        dirty = False
        for name in fields:
            value, changed = _scrub(getattr(obj, name), personal)
            if changed:
                setattr(obj, name, value)
                dirty = True
        if dirty:
            changed_rows.append(obj)
    if changed_rows:
        qs.model.objects.bulk_update(changed_rows, fields, batch_size=500)
    return len(changed_rows)


def _blank_customer(customer: Customer, keep: tuple[str, ...]) -> list[str]:
    blanked = []
    for name in Customer.CORE_FIELDS:
        if name in keep:
            continue
        empty: Any = None if name in _NULL_FIELDS else ([] if name == "tags" else "")
        if getattr(customer, name) not in (empty, "", None, []):
            blanked.append(name)
        setattr(customer, name, empty)
    blanked += [name for name in customer.custom if name not in keep]
    customer.custom = {k: v for k, v in customer.custom.items() if k in keep}
    customer.name_pinyin = ""
    customer.quality_flags = {}
    return blanked


def _history_blank_values(keep: tuple[str, ...]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in Customer.CORE_FIELDS:
        if name not in keep:
            values[name] = None if name in _NULL_FIELDS else ([] if name == "tags" else "")
    values["custom"] = {}
    values["quality_flags"] = {}
    return values


def privacy_erase(
    *,
    user,
    subject: Subject,
    mode: str,
    reason: str,  # noqa: ANN001
    request: HttpRequest | None = None,
) -> PrivacyRequest:
    """Erase (or anonymize) everything in ``subject``; see the module docstring."""
    from crmhub.outbox import change_record

    _require(user)
    if mode not in (PrivacyRequestKind.ERASE, PrivacyRequestKind.ANONYMIZE):
        raise PrivacyInputError(_("Choose to erase or to anonymize."))
    if not (reason or "").strip():
        raise PrivacyInputError(_("State the request's reference or reason."))
    if not subject.customer_ids and not subject.source_record_ids:
        raise PrivacyInputError(_("Nothing is held about this person."))
    keep = ANONYMIZE_KEEPS if mode == PrivacyRequestKind.ANONYMIZE else ()
    with transaction.atomic():
        row = PrivacyRequest.objects.create(
            kind=mode,
            identifiers=subject.identifiers,
            customer_ids=subject.customer_ids,
            counts=subject.counts,
            reason=reason,
            acting_user=user,
        )
        ref = f"privacy_request:{row.pk}"
        _audit(
            user=user,
            kind=f"privacy_{mode}_started",
            request_row=row,
            request=request,
            reason=reason,
            details={"customers": subject.customer_ids, **subject.counts},
        )
        customers = list(Customer.objects.select_for_update().filter(pk__in=subject.customer_ids).order_by("pk"))
        records = list(SourceRecord.objects.filter(pk__in=subject.source_record_ids))
        original_keys = [(r.source_id, r.source_key) for r in records]
        ErasedKey.objects.bulk_create(
            [ErasedKey(source_id=sid, key_hash=blind_index(key), privacy_request=row) for sid, key in original_keys],
            ignore_conflicts=True,
        )
        personal = _personal_strings(customers, records)

        # Earlier feed events carry values: keep the events (consumers' cursors), drop their data.
        ChangeEvent.objects.filter(customer_id__in=subject.customer_ids).update(data={})
        with change_context(channel=ChangeChannel.SYSTEM, ref=ref, user=user):
            for customer in customers:
                blanked = _blank_customer(customer, keep)
                customer.status = CustomerStatus.ERASED
                customer.version += 1
                customer._change_reason = ref  # noqa: SLF001 - simple-history's reason attribute
                customer.save()
                change_record(
                    event_type=ChangeEventType.ERASED, customer_id=customer.pk, changed_fields=blanked, data={}
                )
            _audit(
                user=user,
                kind=f"privacy_{mode}_customers",
                request_row=row,
                request=request,
                details={"customers": [c.pk for c in customers]},
            )

            # Source records: values gone; a key that is itself a personal value is replaced.
            for record in records:
                if keep:
                    normalized = unseal_values(record.normalized)
                    record.normalized = {k: v for k, v in normalized.items() if k in keep}
                else:
                    record.normalized = {}
                record.raw, record.flags, record.record_hash = {}, {}, ""
                if any(p in record.source_key for p in personal):
                    record.source_key = f"erased-{record.pk}"
            SourceRecord.objects.bulk_update(
                records, ["raw", "normalized", "flags", "record_hash", "source_key"], batch_size=500
            )
            interactions = Interaction.objects.filter(pk__in=subject.interaction_ids)
            interactions.update(details={}, title="")
            _audit(
                user=user,
                kind=f"privacy_{mode}_records",
                request_row=row,
                request=request,
                details={"source_records": len(records), "interactions": len(subject.interaction_ids)},
            )

            # History: the personal columns of every historical row.
            history_counts = {
                "customers": Customer.history.model.objects.filter(id__in=subject.customer_ids).update(
                    **_history_blank_values(keep)
                ),
                "source_records": SourceRecord.history.model.objects.filter(id__in=subject.source_record_ids).update(
                    raw={}, normalized={}, flags={}, record_hash=""
                ),
                "interactions": Interaction.history.model.objects.filter(id__in=subject.interaction_ids).update(
                    details={}, title=""
                ),
            }
            renamed = {r.pk: r.source_key for r in records if r.source_key.startswith("erased-")}
            for pk, key in renamed.items():
                SourceRecord.history.model.objects.filter(id=pk).update(source_key=key)
            _audit(
                user=user,
                kind=f"privacy_{mode}_history",
                request_row=row,
                request=request,
                details={"history_rows": history_counts},
            )

            copies = _scrub_copies(subject, original_keys, personal)
            _audit(user=user, kind=f"privacy_{mode}_copies", request_row=row, request=request, details=copies)
        row.counts = {**subject.counts, "history_rows": history_counts, "copies": copies}
        row.save(update_fields=["counts"])
        _audit(
            user=user,
            kind=f"privacy_{mode}_done",
            request_row=row,
            request=request,
            details={"customers": subject.customer_ids},
        )
    return row


def _scrub_copies(subject: Subject, keys_held: list[tuple[int, str]], personal: set[str]) -> dict[str, int]:
    """Values copied elsewhere: merge snapshots, match explanations, import reports."""
    from dedup.models import FieldOverride, MatchCandidate, Merge
    from imports.models import ImportRunChange, ImportRunIssue

    ids = subject.customer_ids
    counts = {
        # Values a steward chose (survivorship overrides) are copies too: they go entirely.
        "overrides": FieldOverride.objects.filter(customer_id__in=ids).delete()[0],
        "merges": _scrub_rows(Merge.objects.filter(survivor_id__in=ids), ["values", "before", "after"], personal),
        "match_candidates": _scrub_rows(
            MatchCandidate.objects.filter(Q(left_id__in=ids) | Q(right_id__in=ids)), ["explanation"], personal
        ),
        "import_changes": _scrub_rows(
            ImportRunChange.objects.filter(Q(source_record_id__in=subject.source_record_ids) | Q(customer_id__in=ids)),
            ["before"],
            personal,
        ),
    }
    keys = Q(pk__in=[])
    for source_id, source_key in keys_held:
        keys |= Q(run__source_id=source_id, source_key=source_key)
    counts["import_issues"] = (
        _scrub_rows(ImportRunIssue.objects.filter(keys), ["raw", "source_key"], personal) if keys_held else 0
    )
    # Export files and the working data of finished dedup runs may hold the person too; neither
    # is needed any more (a finished run's parts are only kept for its statistics).
    from accounts.services import exports_expire
    from dedup.choices import RunStatus
    from dedup.models import DedupRunPart

    counts["export_files"] = exports_expire(
        generated_before=timezone.now(), note=_("The file was removed by a data-subject erasure request.")
    )
    counts["dedup_run_parts"] = (
        DedupRunPart.objects.filter(run__status__in=RunStatus.terminal())
        .exclude(payload=b"", result=b"")
        .update(payload=b"", result=b"")
    )
    return counts


def erased_key_hashes(source_id: int) -> set[str]:
    """The keyed hashes of source ``source_id``'s erased keys (see ErasedKey); usually none."""
    return set(ErasedKey.objects.filter(source_id=source_id).values_list("key_hash", flat=True))


def erased_among(hashes: set[str], keys: Iterable[str]) -> set[str]:
    """Which of ``keys`` are erased, given ``erased_key_hashes``; hashes only if there are any."""
    if not hashes:
        return set()
    return {k for k in keys if k and any(h in hashes for h in blind_index_candidates(k))}


def erased_keys(source_id: int, keys: Iterable[str]) -> set[str]:
    """The ``keys`` of source ``source_id`` whose person was erased: one small query."""
    return erased_among(erased_key_hashes(source_id), keys)
