from __future__ import annotations

import io
import json
from types import SimpleNamespace

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction

from accounts.crypto import CIPHERTEXT_PREFIX, decrypt, seal_values
from accounts.models import AuditEvent
from crmhub.choices import ChangeEventType, CustomerStatus
from crmhub.models import ChangeEvent, Customer, Interaction, PrivacyRequest, SourceRecord
from crmhub.outbox import change_record
from crmhub.privacy import (
    PrivacyInputError,
    privacy_erase,
    privacy_report,
    privacy_report_json,
    privacy_report_xlsx,
    privacy_subject_find,
)
from tests.factories import CustomerFactory, InteractionFactory, SourceFactory, SourceRecordFactory

pytestmark = pytest.mark.django_db

MOBILE = "+8613912345678"
NATIONAL = "13912345678"
EMAIL = "ouyang.nana@example.com"
ID_NUMBER = "11010519491231002X"
NAME = "欧阳娜娜"
ADDRESS = "北京市朝阳区幸福路88号"
PERSONAL = [NATIONAL, EMAIL, ID_NUMBER, NAME, ADDRESS]


@pytest.fixture
def person(db):  # noqa: ANN001, ANN201
    from dedup.models import MatchCandidate
    from imports.choices import IssueKind
    from imports.models import ImportRun, ImportRunIssue

    crm, shop = SourceFactory(code="crm"), SourceFactory(code="shop")
    customer = CustomerFactory(
        full_name=NAME,
        family_name="欧阳",
        given_name="娜娜",
        mobile=MOBILE,
        email=EMAIL,
        id_number=ID_NUMBER,
        address=ADDRESS,
        city="北京",
    )
    customer.city = "北京市"
    customer.save()  # a second history row
    old = CustomerFactory(full_name=NAME, mobile=MOBILE, email="", status=CustomerStatus.MERGED, merged_into=customer)
    other = CustomerFactory(full_name="李雷", mobile="+8613800000009", email="lilei@example.com")
    secret = {"id_number"}
    SourceRecordFactory(
        source=crm,
        source_key="C001",
        customer=customer,
        raw=seal_values({"姓名": NAME, "手机": "139 1234 5678", "身份证": ID_NUMBER}, {"身份证"}),
        normalized=seal_values({"full_name": NAME, "mobile": MOBILE, "id_number": ID_NUMBER}, secret),
    )
    # A source keyed by the mobile number itself.
    SourceRecordFactory(
        source=shop,
        source_key=NATIONAL,
        customer=old,
        raw={"收货人": NAME, "电话": NATIONAL, "地址": ADDRESS},
        normalized={"full_name": NAME, "mobile": MOBILE, "address": ADDRESS},
    )
    # An orphan record found by its e-mail alone.
    orphan = SourceRecordFactory(
        source=shop, source_key="S-9", customer=None, raw={"邮箱": EMAIL.upper()}, normalized={"email": EMAIL}
    )
    kept = SourceRecordFactory(source=crm, source_key="C002", customer=other)
    InteractionFactory(
        customer=customer, source=shop, title=f"{NAME}的订单", details={"收货电话": NATIONAL, "sku": "A-1"}
    )
    other_interaction = InteractionFactory(customer=other, source=shop, title="订单", details={"sku": "B-2"})
    with transaction.atomic():
        change_record(
            event_type=ChangeEventType.UPDATED,
            customer_id=customer.pk,
            changed_fields=["mobile"],
            data={"mobile": MOBILE, "email": EMAIL, "id_number": ID_NUMBER},
        )
    MatchCandidate.objects.create(
        left=customer,
        right=other,
        score=0.4,
        explanation=[{"field": "mobile", "left": MOBILE, "right": "+8613800000009"}],
    )
    run = ImportRun.objects.create(source=shop, status="completed")
    ImportRunIssue.objects.create(
        run=run,
        row_number=3,
        kind=IssueKind.INVALID,
        source_key=NATIONAL,
        raw={"电话": NATIONAL, "邮箱": "bad"},
        reasons={"邮箱": "not a valid email"},
    )
    return SimpleNamespace(
        customer=customer, old=old, other=other, orphan=orphan, kept=kept, other_interaction=other_interaction
    )


@pytest.mark.parametrize(
    "mobile", ["+86 139 1234 5678", "0086-139-1234-5678", "139 1234 5678", "8613912345678", "１３９１２３４５６７８"]
)
def test_it_finds_the_person_by_a_differently_formatted_mobile(person, admin_user, mobile):
    subject = privacy_subject_find(user=admin_user, mobile=mobile)
    assert subject.customer_ids == sorted([person.customer.pk, person.old.pk])
    assert person.kept.pk not in subject.source_record_ids
    assert SourceRecord.objects.filter(pk__in=subject.source_record_ids).count() == 2
    assert subject.interaction_ids == list(
        Interaction.objects.filter(customer=person.customer).values_list("pk", flat=True)
    )


def test_it_finds_the_person_by_id_number_and_by_email(person, admin_user):
    by_id = privacy_subject_find(user=admin_user, id_number="11010519491231002x")
    assert by_id.customer_ids == sorted([person.customer.pk, person.old.pk])
    by_email = privacy_subject_find(user=admin_user, email="  OUYANG.NANA@example.com ")
    assert person.orphan.pk in by_email.source_record_ids
    assert by_email.customer_ids == sorted([person.customer.pk, person.old.pk])


def test_it_refuses_bad_identifiers_without_repeating_them(person, admin_user):
    with pytest.raises(PrivacyInputError) as exc:
        privacy_subject_find(user=admin_user, mobile="12345")
    assert "12345" not in str(exc.value)
    with pytest.raises(PrivacyInputError):
        privacy_subject_find(user=admin_user)


@pytest.mark.parametrize("persona", ["sales", "steward", "support", "auditor", "outsider"])
def test_it_lets_only_admins_handle_requests(person, request, persona):
    user = request.getfixturevalue(persona)
    with pytest.raises(PermissionDenied):
        privacy_subject_find(user=user, mobile=MOBILE)


def test_it_lets_a_holder_of_the_permission_handle_requests(person, steward):
    from django.contrib.auth.models import Permission

    steward.user_permissions.add(Permission.objects.get(codename="handle_privacy_requests"))
    steward = type(steward).objects.get(pk=steward.pk)
    assert privacy_subject_find(user=steward, mobile=MOBILE).customer_ids


def test_it_exports_a_report_of_everything_held(person, admin_user):
    from openpyxl import load_workbook

    subject = privacy_subject_find(user=admin_user, mobile=MOBILE)
    report = privacy_report(user=admin_user, subject=subject)
    data = json.loads(privacy_report_json(report))
    (current,) = [c for c in data["customers"] if c["id"] == person.customer.pk]
    assert current["values"]["mobile"] == MOBILE and current["values"]["email"] == EMAIL
    assert current["values"]["id_number"] != ID_NUMBER  # secret: masked even for admins, as everywhere
    assert current["history"]
    assert {r["source_key"] for r in data["source_records"]} == {"C001", NATIONAL}
    assert data["interactions"][0]["details"]["收货电话"] == NATIONAL
    workbook = load_workbook(io.BytesIO(privacy_report_xlsx(report)))
    assert set(workbook.sheetnames) == {"customers", "history", "source_records", "interactions"}
    cells = [c for row in workbook["customers"].iter_rows(values_only=True) for c in row]
    assert "'" + MOBILE in cells  # formula-safe: a leading "+" is quoted


def _leftovers() -> list[str]:
    """Every table cell (raw SQL) that still holds one of the person's values, sealed or not."""
    found = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            for row in cursor.fetchall():
                for cell in row:
                    if isinstance(cell, (bytes, memoryview)):
                        continue
                    text = json.dumps(cell, ensure_ascii=False, default=str) if not isinstance(cell, str) else cell
                    texts = [text]
                    for token in text.replace('"', " ").split():
                        if token.startswith(CIPHERTEXT_PREFIX):
                            try:
                                texts.append(decrypt(token.rstrip(",}]")))
                            except Exception:  # noqa: BLE001, S112
                                continue
                    for value in PERSONAL:
                        if any(value in t for t in texts):
                            found.append(f"{table}: {value}")
    return found


def test_it_erases_everything_everywhere_and_tells_the_feed(person, admin_user):
    assert _leftovers()  # the check itself finds the values before the erasure
    # Identifiers are not chased transitively (a shared family e-mail would pull in someone
    # else): the orphan record holding only the e-mail is found because the person gave both.
    subject = privacy_subject_find(user=admin_user, mobile="139 1234 5678", email=EMAIL)
    assert person.orphan.pk in subject.source_record_ids
    request_row = privacy_erase(user=admin_user, subject=subject, mode="erase", reason="PIPL request 2026-17")

    assert _leftovers() == []
    for pk in (person.customer.pk, person.old.pk):
        customer = Customer.objects.get(pk=pk)
        assert customer.status == CustomerStatus.ERASED and customer.mobile == "" and customer.id_number_hash == ""
        assert ChangeEvent.objects.filter(customer_id=pk, event_type=ChangeEventType.ERASED).count() == 1
    assert Customer.objects.get(pk=person.old.pk).merged_into_id == person.customer.pk
    # The shop's key was the mobile number: replaced, the record kept as a cross-reference.
    assert SourceRecord.objects.filter(source__code="shop", source_key__startswith="erased-").count() == 1
    # Someone else's data is untouched.
    other = Customer.objects.get(pk=person.other.pk)
    assert other.mobile == "+8613800000009" and other.status == CustomerStatus.ACTIVE
    person.kept.refresh_from_db()
    assert person.kept.normalized
    person.other_interaction.refresh_from_db()
    assert person.other_interaction.details == {"sku": "B-2"}
    # The audit trail: each step, with ids and counts only.
    kinds = list(AuditEvent.objects.filter(object_id=str(request_row.pk)).values_list("kind", flat=True))
    assert {"privacy_erase_started", "privacy_erase_customers", "privacy_erase_history", "privacy_erase_done"} <= set(
        kinds
    )
    assert PrivacyRequest.objects.get(pk=request_row.pk).counts["customers"] == 2
    # Searching again finds nothing personal left to find.
    with pytest.raises(PrivacyInputError):
        privacy_erase(
            user=admin_user, subject=privacy_subject_find(user=admin_user, mobile=MOBILE), mode="erase", reason="again"
        )


def test_it_anonymizes_keeping_coarse_attributes(person, admin_user):
    subject = privacy_subject_find(user=admin_user, email=EMAIL)
    privacy_erase(user=admin_user, subject=subject, mode="anonymize", reason="PIPL request 2026-18")
    customer = Customer.objects.get(pk=person.customer.pk)
    assert customer.status == CustomerStatus.ERASED
    assert (customer.full_name, customer.mobile, customer.email, customer.address) == ("", "", "", "")
    assert customer.city == "北京市" and customer.gender == "M"
    assert _leftovers() == []


def test_it_rolls_the_whole_erasure_back_when_a_step_fails(person, admin_user, monkeypatch):
    import crmhub.privacy as privacy

    def boom(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("disk full")

    monkeypatch.setattr(privacy, "_scrub_copies", boom)
    subject = privacy_subject_find(user=admin_user, mobile=MOBILE)
    with pytest.raises(RuntimeError):
        privacy_erase(user=admin_user, subject=subject, mode="erase", reason="x")
    customer = Customer.objects.get(pk=person.customer.pk)
    assert customer.mobile == MOBILE and customer.status == CustomerStatus.ACTIVE
    assert not ChangeEvent.objects.filter(event_type=ChangeEventType.ERASED).exists()
    assert not PrivacyRequest.objects.exists()


def test_it_tells_feed_consumers_of_the_erasure(person, admin_user):
    from rest_framework.test import APIClient

    subject = privacy_subject_find(user=admin_user, mobile=MOBILE, email=EMAIL)
    privacy_erase(user=admin_user, subject=subject, mode="erase", reason="PIPL request 2026-19")
    client = APIClient()
    client.force_authenticate(admin_user)
    events = client.get("/api/v1/changes/", {"after": 0, "limit": 1000}).json()["results"]
    erased = [e for e in events if e["event_type"] == "erased"]
    assert sorted(e["customer"] for e in erased) == sorted([person.customer.pk, person.old.pk])
    assert all(e["data"] == {} for e in events if e["customer"] in subject.customer_ids)
    (mine,) = [e for e in erased if e["customer"] == person.customer.pk]
    assert {"mobile", "email", "full_name", "id_number"} <= set(mine["changed_fields"])
    assert NATIONAL not in json.dumps(events, ensure_ascii=False)


@pytest.mark.parametrize(
    ("mode", "reason", "message"),
    [
        ("delete", "T-1", "erase or to anonymize"),
        ("erase", "  ", "reference or reason"),
    ],
)
def test_it_refuses_an_erasure_without_a_mode_or_a_reference_and_changes_nothing(
    person, admin_user, mode, reason, message
):
    subject = privacy_subject_find(user=admin_user, mobile=MOBILE)
    with pytest.raises(PrivacyInputError, match=message):
        privacy_erase(user=admin_user, subject=subject, mode=mode, reason=reason)
    assert Customer.objects.get(pk=person.customer.pk).mobile == MOBILE
    assert not PrivacyRequest.objects.exists()


def test_erasure_removes_export_files_and_finished_dedup_working_data(person, admin_user, steward):
    """Copies that could hold the person outside the tables erasure scrubs row by row."""
    from django.core.files.base import ContentFile
    from django.utils import timezone

    from accounts.models import AuditEventKind, ExportRequest, ExportStatus
    from dedup.choices import RunStatus
    from dedup.models import DedupRun, DedupRunPart
    from dedup.services import match_rule_default_ensure

    export = ExportRequest.objects.create(requested_by=steward, status=ExportStatus.READY, generated_at=timezone.now())
    export.file.save("export-x.csv", ContentFile(b"name,mobile\n"), save=True)
    path = export.file.path
    rule = match_rule_default_ensure()
    finished = DedupRun.objects.create(rule=rule, status=RunStatus.COMPLETED)
    running = DedupRun.objects.create(rule=rule, status=RunStatus.RUNNING)
    DedupRunPart.objects.create(run=finished, number=1, payload=b"features", result=b"scores", done=True)
    DedupRunPart.objects.create(run=running, number=1, payload=b"features")

    subject = privacy_subject_find(user=admin_user, mobile="139 1234 5678", email=EMAIL)
    request_row = privacy_erase(user=admin_user, subject=subject, mode="erase", reason="PIPL request")

    export.refresh_from_db()
    assert export.status == ExportStatus.EXPIRED and not export.file
    assert "erasure" in export.message
    import os

    assert not os.path.exists(path)
    assert bytes(DedupRunPart.objects.get(run=finished).payload) == b""
    assert bytes(DedupRunPart.objects.get(run=running).payload) == b"features"  # a live run keeps its input
    assert request_row.counts["copies"]["export_files"] == 1
    assert request_row.counts["copies"]["dedup_run_parts"] == 1
    kinds = set(AuditEvent.objects.values_list("kind", flat=True))
    assert {AuditEventKind.PRIVACY_ERASE_STARTED, AuditEventKind.PRIVACY_ERASE_DONE} <= kinds
    labels = dict(AuditEventKind.choices)
    assert all(kind in labels for kind in kinds), kinds - set(labels)


def test_erasure_remembers_the_keys_so_an_old_file_cannot_bring_the_person_back(person, admin_user):
    from crmhub.privacy import erased_keys

    subject = privacy_subject_find(user=admin_user, mobile="139 1234 5678", email=EMAIL)
    held = list(SourceRecord.objects.filter(pk__in=subject.source_record_ids).values_list("source_id", "source_key"))
    privacy_erase(user=admin_user, subject=subject, mode="erase", reason="PIPL request")
    for source_id, key in held:
        assert erased_keys(source_id, [key, "someone-else"]) == {key}
    # Only keyed hashes are kept, never the key itself.
    from crmhub.models import ErasedKey

    stored = set(ErasedKey.objects.values_list("key_hash", flat=True))
    assert stored and not any(key in stored for _, key in held)


def test_a_push_of_an_erased_key_is_refused_with_the_reason(admin_user):
    from imports.connectors.push import push_records
    from tests.dedup.conftest import make_source

    source = make_source("app")
    for key in ("K1", "K2"):
        push_records(source=source, user=admin_user, payload={"source_key": key, "mobile": "13912345678"})
    subject = privacy_subject_find(user=admin_user, mobile="139 1234 5678")
    privacy_erase(user=admin_user, subject=subject, mode="erase", reason="PIPL request")
    # The same person arrives again from an old copy, alone (single path) and in a batch.
    again = push_records(source=source, user=admin_user, payload={"source_key": "K1", "mobile": "13912345678"})
    assert again.body["records"][0]["status"] == "rejected"
    assert "erased" in again.body["records"][0]["errors"][""]
    batch = push_records(
        source=source,
        user=admin_user,
        payload=[{"source_key": "K2", "mobile": "13912345678"}, {"source_key": "K3", "mobile": "13800000003"}],
    )
    assert [r["status"] for r in batch.body["records"]] == ["rejected", "created"]
    assert not Customer.objects.filter(mobile="+8613912345678", status=CustomerStatus.ACTIVE).exists()


def test_a_file_with_an_erased_key_stores_the_others_and_reports_the_row_without_its_data(admin_user, tmp_path):
    from imports.models import ImportRunIssue
    from tests.dedup.conftest import make_source

    source = make_source("crm")
    old = SourceRecordFactory(source=source, source_key="C1", customer=CustomerFactory(mobile="+8613912345678"))
    subject = privacy_subject_find(user=admin_user, mobile="139 1234 5678")
    assert old.pk in subject.source_record_ids
    privacy_erase(user=admin_user, subject=subject, mode="erase", reason="PIPL request")
    path = tmp_path / "old.csv"
    path.write_text("客户编号,姓名,手机\nC1,张三,13912345678\nC2,李四,13800000002\n", encoding="utf-8")
    from django.core.management import call_command

    out = io.StringIO()
    call_command("import_file", str(path), "--source", "crm", "--auto-map", "--inline", stdout=out)
    summary = json.loads(out.getvalue().strip().splitlines()[-1])
    assert (summary["created"], summary["errors"]) == (1, 1)
    issue = ImportRunIssue.objects.get(run_id=summary["run"])
    assert "erased" in json.dumps(issue.reasons, ensure_ascii=False)
    assert "13912345678" not in json.dumps([issue.raw, issue.source_key], ensure_ascii=False)
    assert not Customer.objects.filter(mobile="+8613912345678", status=CustomerStatus.ACTIVE).exists()
