from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from accounts.crypto import blind_index
from crmhub.choices import ChangeChannel, CustomerStatus
from crmhub.context import change_context
from crmhub.dictionary import CORE_FIELDS
from crmhub.models import Customer, FieldDefinition, Source
from tests.factories import CustomerFactory, InteractionFactory, SourceFactory, SourceRecordFactory

pytestmark = pytest.mark.django_db


def test_it_seeds_every_core_field_of_the_data_dictionary():
    names = set(FieldDefinition.objects.filter(is_core=True).values_list("name", flat=True))
    assert names == {row[0] for row in CORE_FIELDS}
    # Every core field is a column of the golden record.
    assert names <= set(Customer.CORE_FIELDS)
    mobile = FieldDefinition.objects.get(name="mobile")
    assert (mobile.is_identity_key, mobile.sensitivity, mobile.mask_style) == (True, "confidential", "mobile")
    assert FieldDefinition.objects.get(name="id_number").sensitivity == "secret"


def test_it_rejects_a_source_code_with_spaces_or_capitals():
    with pytest.raises(ValidationError):
        Source(code="Online Store", name="x").full_clean()
    Source(code="online-store_2", name="x").full_clean()


def test_it_keeps_one_source_record_per_source_and_key():
    record = SourceRecordFactory(source_key="CID-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        SourceRecordFactory(source=record.source, source_key="CID-1")
    # The same key in another source is another person's record, which is fine.
    SourceRecordFactory(source=SourceFactory(code="other"), source_key="CID-1")


def test_it_stores_id_numbers_encrypted_with_a_blind_index():
    customer = CustomerFactory(id_number="11010519491231002X")
    with connection.cursor() as cursor:
        cursor.execute("SELECT id_number, id_number_hash FROM crmhub_customer WHERE id = %s", [customer.pk])
        stored, stored_hash = cursor.fetchone()
    assert "11010519491231002X" not in stored
    assert stored.startswith("enc1:")
    assert stored_hash == blind_index("11010519491231002X")
    assert Customer.objects.get(pk=customer.pk).id_number == "11010519491231002X"
    assert Customer.objects.filter(id_number_hash=blind_index("11010519491231002X")).get() == customer


def test_it_refuses_a_merged_customer_without_a_survivor():
    with pytest.raises(IntegrityError), transaction.atomic():
        CustomerFactory(status=CustomerStatus.MERGED, merged_into=None)


def test_it_records_who_and_through_what_in_history(steward):
    with change_context(channel=ChangeChannel.IMPORT, ref="import_run:7", user=steward):
        customer = CustomerFactory(full_name="李娜")
        customer.city = "上海"
        customer.save()
    entries = list(customer.history.order_by("history_id"))
    assert [e.history_type for e in entries] == ["+", "~"]
    assert {(e.change_channel, e.change_ref, e.history_user_id) for e in entries} == {
        ("import", "import_run:7", steward.pk)
    }
    delta = entries[1].diff_against(entries[0])
    assert [(c.field, c.old, c.new) for c in delta.changes] == [("city", "", "上海")]


def test_it_orders_the_timeline_newest_first():
    customer = CustomerFactory()
    old = InteractionFactory(customer=customer, occurred_at="2024-01-05T10:00:00+08:00")
    new = InteractionFactory(customer=customer, occurred_at="2025-03-01T10:00:00+08:00")
    assert list(customer.interactions.all()) == [new, old]


def test_it_allows_one_external_id_per_source_but_many_blank_ones():
    first = InteractionFactory(external_id="ORD-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        InteractionFactory(source=first.source, external_id="ORD-1")
    InteractionFactory(source=first.source, external_id="")
    InteractionFactory(source=first.source, external_id="")


def test_it_seals_secret_values_inside_json_and_presents_them_masked(support):
    from accounts.crypto import seal_values, secret_field_names
    from accounts.policy import present_values

    sealed = seal_values({"id_number": "11010519491231002X", "mobile": "+8613800138000"}, secret_field_names())
    assert sealed["id_number"].startswith("enc1:") and sealed["mobile"] == "+8613800138000"
    record = SourceRecordFactory(normalized=sealed)
    record.refresh_from_db()
    assert "11010519491231002X" not in str(record.normalized)
    assert present_values(support, record.normalized)["id_number"] == "110105********002X"
