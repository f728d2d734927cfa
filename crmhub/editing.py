"""Manual edits of a golden record by a person (the customer page's edit form, one-click
restores from history, the API): validated, permission-checked, version-checked, recorded
in history and announced on the change feed. Every channel calls ``customer_update``."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from accounts.crypto import seal_values, secret_field_names
from accounts.policy import Access, may_edit, policy_for
from crmhub.choices import ChangeChannel, ChangeEventType, CustomerStatus
from crmhub.context import change_context, current_change_context
from crmhub.models import Customer, FieldDefinition
from crmhub.outbox import change_record, feed_values


class StaleVersionError(ValidationError):
    """The record changed since the person read it: nothing was written; reload and retry."""


def is_editable(name: str) -> bool:
    """Whether field ``name`` can be changed by hand at all: every data-dictionary field (core
    columns and active custom fields); identity and bookkeeping columns are not among them."""
    if name in Customer.CORE_FIELDS:
        return True
    return FieldDefinition.objects.filter(name=name, is_active=True).exists()


def editable_fields(user) -> list[str]:  # noqa: ANN001
    """The fields ``user`` may change by hand, in data-dictionary order."""
    policy = policy_for(user)
    return [name for name in policy.fields if policy(name) >= Access.EDITABLE]


def field_value_clean(name: str, value: Any) -> Any:  # noqa: ANN401
    """The stored form of ``value`` for field ``name``, through the same cleaning as imports;
    a value the cleaner flags is refused with its reason (a person can correct it). A blank
    custom value is None: the field is removed from ``Customer.custom``."""
    from imports.cleaning.frame import cleaner_for
    from imports.cleaning.rules import rules_from

    if value is None or value == "":
        if name not in Customer.CORE_FIELDS:
            return None
        return None if Customer._meta.get_field(name).null else ("" if name != "tags" else [])
    if isinstance(value, list | tuple):
        value = ", ".join(str(v) for v in value)  # the list cleaner takes text, as from a form
    definition = FieldDefinition.objects.filter(name=name).first()
    field_type = definition.field_type if definition else ""
    cleaned = cleaner_for(name, field_type)(value)
    flag = cleaned.flag
    if not flag and definition is not None:
        rules = rules_from([(name, definition.validation_regex, definition.choices)]).get(name)
        flag = rules.flag(cleaned.value) if rules and cleaned.value not in (None, "", []) else ""
    if flag:
        raise ValidationError({name: str(flag)})
    result = cleaned.value
    if name == "birth_date" and isinstance(result, str):
        result = Customer._meta.get_field(name).to_python(result)
    return result


@transaction.atomic
def customer_update(
    *,
    customer_id: int,
    values: dict[str, Any],
    expected_version: int,
    acting_user,  # noqa: ANN001
    channel: str = ChangeChannel.WEB,
    ref: str = "",
) -> Customer:
    """Set ``values`` on the customer if it is still at ``expected_version``.

    Raises PermissionDenied for a field the user may not edit, ValidationError (per field)
    for an invalid value and StaleVersionError when someone changed the record meanwhile.
    Unchanged values are ignored; if nothing changes, nothing is written.
    """
    unknown = [n for n in values if not is_editable(n)]
    if unknown:
        raise ValidationError({n: _("This field cannot be edited.") for n in unknown})
    denied = [n for n in values if not may_edit(acting_user, n)]
    if denied:
        raise PermissionDenied(_("You may not edit: %(fields)s.") % {"fields": ", ".join(denied)})
    customer = Customer.objects.select_for_update().get(pk=customer_id)
    if customer.status != CustomerStatus.ACTIVE:
        raise ValidationError(
            _("Customer %(id)s is %(status)s; it cannot be edited.")
            % {"id": customer_id, "status": customer.get_status_display()}
        )
    if customer.version != int(expected_version):
        raise StaleVersionError(
            _(
                "Someone changed this customer since you opened it (now version %(now)s, you had %(read)s). "
                "Nothing was saved; look at the current values and try again."
            )
            % {"now": customer.version, "read": expected_version}
        )
    errors: dict[str, list[str]] = {}
    cleaned: dict[str, Any] = {}
    for name, value in values.items():
        try:
            cleaned[name] = field_value_clean(name, value)
        except ValidationError as exc:
            errors.update(exc.message_dict if hasattr(exc, "error_dict") else {name: exc.messages})
    if errors:
        raise ValidationError(errors)
    changed = {n: v for n, v in cleaned.items() if customer.get_value(n) != v}
    if not changed:
        return customer
    ctx = current_change_context()
    with change_context(channel=channel, ref=ref or ctx.ref, user=acting_user):
        custom = dict(customer.custom or {})
        secret = secret_field_names()
        for name, value in changed.items():
            if name in Customer.CORE_FIELDS:
                setattr(customer, name, value)
            elif value is None:
                custom.pop(name, None)
            else:
                custom[name] = seal_values({name: value}, secret)[name]  # secret ones stored sealed
        customer.custom = custom
        if "full_name" in changed:
            from imports.cleaning.names import name_pinyin

            customer.name_pinyin = name_pinyin(customer.full_name)
        customer.version += 1
        customer.save()
        # Custom values go under "custom", as every writer stores them (crmhub.outbox.event_values).
        data = feed_values({n: v for n, v in changed.items() if n in Customer.CORE_FIELDS})
        changed_custom = {n: v for n, v in changed.items() if n not in Customer.CORE_FIELDS}
        if changed_custom:
            # The outbox seals top-level secret values; nested ones are sealed here.
            data["custom"] = seal_values(feed_values(changed_custom), secret_field_names())
        change_record(
            event_type=ChangeEventType.UPDATED,
            customer_id=customer.pk,
            changed_fields=sorted({n if n in Customer.CORE_FIELDS else "custom" for n in changed}),
            data=data,
        )
    # A person's choice: survivorship keeps it until a newer source value arrives (per its rule).
    from dedup.survivorship import field_overrides_record

    field_overrides_record(customer_id=customer.pk, values=changed, user=acting_user, channel=channel, ref=ref)
    return customer


def customer_value_restore(
    *,
    customer_id: int,
    history_id: int,
    field: str,
    expected_version: int,
    acting_user,  # noqa: ANN001
) -> Customer:
    """Set ``field`` back to the value it had in history row ``history_id`` of this customer:
    a manual edit like any other (same checks), recorded with the reference ``restore:<history_id>``."""
    row = Customer.history.filter(id=customer_id, history_id=history_id).first()
    if row is None:
        raise ValidationError(
            _("History entry %(history)s does not belong to customer %(id)s.")
            % {"history": history_id, "id": customer_id}
        )
    if not is_editable(field):
        raise ValidationError({field: _("This field cannot be edited.")})
    value = getattr(row, field) if field in Customer.CORE_FIELDS else (row.custom or {}).get(field)
    return customer_update(
        customer_id=customer_id,
        values={field: value},
        expected_version=expected_version,
        acting_user=acting_user,
        channel=ChangeChannel.WEB,
        ref=f"restore:{history_id}",
    )
