from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from crmhub.models import Source, code_validator
from imports.models import MappingTemplate

__all__ = ["UploadForm"]


class UploadForm(forms.Form):
    source = forms.ModelChoiceField(
        Source.objects.filter(is_active=True),
        to_field_name="code",
        required=False,
        label=_("Source"),
        empty_label=_("— new source —"),
    )
    new_source = forms.CharField(
        label=_("New source code"),
        required=False,
        max_length=64,
        validators=[code_validator],
        help_text=_("Lowercase letters, digits, '-' and '_'; created on first use."),
    )
    file = forms.FileField(label=_("File"), help_text=_("CSV, TSV, TXT, XLSX or XLS"))
    template = forms.ModelChoiceField(
        MappingTemplate.objects.select_related("source"),
        required=False,
        label=_("Mapping template"),
        empty_label=_("— map on the next screen —"),
    )
    dry_run = forms.BooleanField(label=_("Dry run first (preview, write nothing)"), required=False, initial=True)

    def clean(self) -> dict:
        data = super().clean()
        if not data.get("source") and not data.get("new_source"):
            raise forms.ValidationError(_("Choose a source or enter the code of a new one."))
        template = data.get("template")
        if template and data.get("source") and template.source_id != data["source"].pk:
            raise forms.ValidationError(_("That template belongs to another source."))
        return data
