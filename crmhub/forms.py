"""Forms of the customer pages: the golden record's edit form (fields the user may edit)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from accounts.policy import policy_for, value_as_text
from crmhub.choices import FieldType, Gender
from crmhub.editing import editable_fields

__all__ = ["CustomerEditForm"]

_BOOLEAN_CHOICES = [("", "—"), ("true", _("Yes")), ("false", _("No"))]


class CustomerEditForm(forms.Form):
    """One text input per field the user may edit, pre-filled with the current value, and the
    version the values were read at (the optimistic check of ``customer_update``)."""

    version = forms.IntegerField(widget=forms.HiddenInput, min_value=1)

    def __init__(self, *args, user, customer, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.customer = customer
        policy = policy_for(user)
        self.editable = editable_fields(user)
        self.initial.setdefault("version", customer.version)
        for name in self.editable:
            definition = policy.fields[name]
            current = value_as_text(customer.get_value(name))
            if definition.field_type == FieldType.BOOLEAN:
                field = forms.ChoiceField(choices=_BOOLEAN_CHOICES, required=False)
            elif name == "gender":
                field = forms.ChoiceField(choices=[("", "—"), *Gender.choices], required=False)
            elif definition.choices and definition.field_type != FieldType.TAGS:
                # The dictionary's allowed values (checked again on save: imports.cleaning.rules).
                allowed = [str(c) for c in definition.choices]
                if current and current not in allowed:
                    allowed.append(current)  # a value from before the list was set stays selectable
                field = forms.ChoiceField(choices=[("", "—"), *((c, c) for c in allowed)], required=False)
            elif definition.field_type == FieldType.DATE:
                field = forms.CharField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
            else:
                field = forms.CharField(required=False, max_length=300)
            field.label = definition.label
            if name == "tags":
                field.help_text = _("Separate tags with commas.")
            self.fields[f"f_{name}"] = field
            self.initial.setdefault(f"f_{name}", current)

    def changed_values(self) -> dict[str, Any]:
        """The fields whose submitted text differs from the current value's text."""
        out = {}
        for name in self.editable:
            submitted = (self.cleaned_data.get(f"f_{name}") or "").strip()
            if submitted != value_as_text(self.customer.get_value(name)):
                out[name] = submitted
        return out

    def field_rows(self) -> list[tuple[str, forms.BoundField]]:
        return [(name, self[f"f_{name}"]) for name in self.editable]
