"""Forms of the access-control pages."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy as _

from accounts.models import ApiTokenScope, AuditEventKind, ExportFormat

__all__ = ["ApiTokenForm", "AuditFilterForm", "RevealForm"]


class RevealForm(forms.Form):
    field = forms.SlugField(max_length=64)
    reason = forms.CharField(label=_("Reason"), min_length=3, max_length=500)


class AuditFilterForm(forms.Form):
    kind = forms.ChoiceField(label=_("Event"), required=False, choices=[("", _("All"))] + AuditEventKind.choices)
    username = forms.CharField(label=_("User"), required=False, max_length=150)
    date_from = forms.DateField(label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label=_("To"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    object_type = forms.CharField(label=_("Object type"), required=False, max_length=64)
    object_id = forms.CharField(label=_("Object id"), required=False, max_length=64)

    def clean(self):  # noqa: ANN201
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise forms.ValidationError(_("The start date is after the end date."))
        return data


class ApiTokenForm(forms.Form):
    user = forms.ModelChoiceField(
        label=_("User"), queryset=get_user_model().objects.filter(is_active=True).order_by("username")
    )
    name = forms.CharField(label=_("Name"), max_length=100)
    scopes = forms.MultipleChoiceField(
        label=_("Scopes"), choices=ApiTokenScope.choices, widget=forms.CheckboxSelectMultiple
    )
    sources = forms.ModelMultipleChoiceField(
        label=_("Allowed sources"),
        queryset=None,
        required=False,
        help_text=_("None selected: every source the user may reach."),
    )
    expires_at = forms.DateTimeField(
        label=_("Expires"), required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        from crmhub.models import Source

        super().__init__(*args, **kwargs)
        self.fields["sources"].queryset = Source.objects.order_by("code")


class ExportForm(forms.Form):
    q = forms.CharField(required=False, max_length=200)
    format = forms.ChoiceField(choices=ExportFormat.choices, initial=ExportFormat.CSV)
    reason = forms.CharField(required=False, max_length=1000)


class ObjectPermissionForm(forms.Form):
    """Grant an action on one object to a user or a group (exactly one of them)."""

    user = forms.ModelChoiceField(
        label=_("User"), required=False, queryset=get_user_model().objects.filter(is_active=True).order_by("username")
    )
    group = forms.ModelChoiceField(label=_("Role / group"), required=False, queryset=None)
    action = forms.ChoiceField(
        label=_("Permission"), choices=[("view", _("View")), ("change", _("Manage")), ("delete", _("Delete"))]
    )

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        from django.contrib.auth.models import Group

        super().__init__(*args, **kwargs)
        self.fields["group"].queryset = Group.objects.order_by("name")

    def clean(self):  # noqa: ANN201
        data = super().clean()
        if bool(data.get("user")) == bool(data.get("group")):
            raise forms.ValidationError(_("Choose a user or a group (one of them)."))
        return data
