"""customer_update: the one write path of a person's edit (page, API, restore from history)."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from crmhub.choices import ChangeChannel, ChangeEventType
from crmhub.editing import StaleVersionError, customer_update
from crmhub.models import ChangeEvent, Customer
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def test_edit_cleans_values_bumps_version_and_records_history_and_feed(steward):
    customer = CustomerFactory(full_name="张伟", mobile="+8613800138000")
    updated = customer_update(
        customer_id=customer.pk,
        values={"mobile": "139 0013 9000", "full_name": "章伟"},
        expected_version=customer.version,
        acting_user=steward,
    )
    assert updated.mobile == "+8613900139000"
    assert updated.name_pinyin == "zhangwei"
    assert updated.version == customer.version + 1
    latest = Customer.history.filter(id=customer.pk).order_by("-history_id").first()
    assert latest.history_user == steward
    assert latest.change_channel == ChangeChannel.WEB
    event = ChangeEvent.objects.get(customer_id=customer.pk, event_type=ChangeEventType.UPDATED)
    assert event.changed_fields == ["full_name", "mobile"]


def test_a_stale_version_writes_nothing(steward):
    customer = CustomerFactory(mobile="+8613800138000")
    customer_update(
        customer_id=customer.pk, values={"company": "甲"}, expected_version=customer.version, acting_user=steward
    )
    with pytest.raises(StaleVersionError, match="Someone changed this customer"):
        customer_update(
            customer_id=customer.pk, values={"company": "乙"}, expected_version=customer.version, acting_user=steward
        )
    assert Customer.objects.get(pk=customer.pk).company == "甲"


def test_an_invalid_value_is_refused_with_its_reason(steward):
    customer = CustomerFactory()
    with pytest.raises(ValidationError) as exc:
        customer_update(
            customer_id=customer.pk, values={"mobile": "12345"}, expected_version=customer.version, acting_user=steward
        )
    assert "mobile" in exc.value.message_dict
    assert Customer.objects.get(pk=customer.pk).version == customer.version


def test_a_field_the_user_may_not_edit_is_refused(sales):
    customer = CustomerFactory()
    with pytest.raises(PermissionDenied):
        customer_update(
            customer_id=customer.pk, values={"id_number": "x"}, expected_version=customer.version, acting_user=sales
        )


def test_unchanged_values_write_nothing(steward):
    customer = CustomerFactory(company="甲")
    same = customer_update(
        customer_id=customer.pk, values={"company": "甲"}, expected_version=customer.version, acting_user=steward
    )
    assert same.version == customer.version
    assert not ChangeEvent.objects.filter(customer_id=customer.pk, event_type=ChangeEventType.UPDATED).exists()


def test_custom_fields_are_edited_cleaned_recorded_and_restored(steward):
    from crmhub.choices import FieldType
    from crmhub.editing import customer_value_restore
    from crmhub.models import FieldDefinition
    from crmhub.outbox import event_changed_fields, event_values

    FieldDefinition.objects.create(name="shoe_size", label_en="Shoe size", label_zh="鞋码", field_type=FieldType.NUMBER)
    FieldDefinition.objects.create(name="old_code", label_en="Old", label_zh="旧", is_active=False)
    customer = CustomerFactory(custom={"shoe_size": 40, "note": "kept"})
    with pytest.raises(ValidationError) as exc:
        customer_update(
            customer_id=customer.pk, values={"shoe_size": "big"}, expected_version=customer.version, acting_user=steward
        )
    assert "shoe_size" in exc.value.message_dict
    with pytest.raises(ValidationError, match="cannot be edited"):
        customer_update(
            customer_id=customer.pk, values={"old_code": "x"}, expected_version=customer.version, acting_user=steward
        )
    updated = customer_update(
        customer_id=customer.pk, values={"shoe_size": " 42 "}, expected_version=customer.version, acting_user=steward
    )
    assert updated.custom == {"shoe_size": 42, "note": "kept"}  # cleaned as a number; other custom values kept
    event = ChangeEvent.objects.get(customer_id=customer.pk, event_type=ChangeEventType.UPDATED)
    assert event.changed_fields == ["custom"] and event.data == {"custom": {"shoe_size": 42}}
    assert event_changed_fields(event) == ["shoe_size"] and event_values(event) == {"shoe_size": 42}
    first = Customer.history.filter(id=customer.pk).order_by("history_id").first()
    # Blank removes the value; restoring from history brings the former one back.
    cleared = customer_update(
        customer_id=customer.pk, values={"shoe_size": ""}, expected_version=updated.version, acting_user=steward
    )
    assert cleared.custom == {"note": "kept"}
    restored = customer_value_restore(
        customer_id=customer.pk,
        history_id=first.history_id,
        field="shoe_size",
        expected_version=cleared.version,
        acting_user=steward,
    )
    assert restored.custom == {"shoe_size": 40, "note": "kept"}
