"""Browser forms of connectors."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from crmhub.models import Source
from imports.connectors.base import REGISTRY

__all__ = ["ConnectorForm", "ScheduleForm", "WebhookForm"]

SQL_FIELDS = ("table", "query", "cursor_column", "statement_timeout")
REST_FIELDS = ("url", "records_path", "pagination", "next_path", "cursor_field", "since_param", "auth_header")


def _lines_to_mapping(text: str) -> dict[str, str]:
    mapping = {}
    for line in text.splitlines():
        if "=" in line:
            column, name = line.rsplit("=", 1)
            if column.strip() and name.strip():
                mapping[column.strip()] = name.strip()
    return mapping


class ConnectorForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100)
    source = forms.ModelChoiceField(Source.objects.filter(is_active=True), to_field_name="code", label=_("Source"))
    kind = forms.ChoiceField(label=_("Kind"), choices=[])
    secret = forms.CharField(
        label=_("Credentials"),
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text=_(
            "SQL: the SQLAlchemy URL, e.g. mysql://user:password@host/db. REST: the auth header "
            "value, e.g. Bearer TOKEN. Stored encrypted; leave empty to keep the stored one."
        ),
    )
    key_columns = forms.CharField(label=_("Source-key column(s)"), help_text=_("Comma-separated."))
    table = forms.CharField(label=_("Table"), required=False)
    query = forms.CharField(
        label=_("Or one SELECT statement"), required=False, widget=forms.Textarea(attrs={"rows": 4})
    )
    cursor_column = forms.CharField(
        label=_("Cursor column"), required=False, help_text=_("An updated_at column or an increasing id.")
    )
    statement_timeout = forms.IntegerField(label=_("Statement timeout (s)"), required=False, min_value=1, initial=120)
    url = forms.URLField(label=_("Endpoint URL"), required=False, assume_scheme="https")
    records_path = forms.CharField(label=_("Path to the records"), required=False, help_text=_("e.g. $.data.items"))
    pagination = forms.ChoiceField(
        label=_("Pagination"),
        required=False,
        choices=[("page", _("Page numbers")), ("cursor", _("Next-page cursor")), ("none", _("None"))],
    )
    next_path = forms.CharField(label=_("Path to the next-page cursor"), required=False)
    cursor_field = forms.CharField(label=_("Incremental cursor field"), required=False)
    since_param = forms.CharField(label=_("Query parameter for the cursor"), required=False)
    auth_header = forms.CharField(label=_("Auth header"), required=False, initial="Authorization")
    page_size = forms.IntegerField(label=_("Page size"), required=False, min_value=1)
    max_failures = forms.IntegerField(label=_("Pause after N failures in a row"), min_value=1, max_value=100, initial=3)
    mapping = forms.CharField(
        label=_("Mapping"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text=_("One 'column = field' per line; empty: suggested from the columns at the first sync."),
    )

    def __init__(self, *args: Any, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = [(k, cls.label) for k, cls in sorted(REGISTRY.items())]
        if editing:
            for name in ("name", "source", "kind"):
                self.fields[name].disabled = True
        else:
            self.fields["secret"].help_text = self.fields["secret"].help_text.split(" Stored")[0]

    def config(self) -> dict[str, Any]:
        data = self.cleaned_data
        names = SQL_FIELDS if data["kind"] == "sql" else REST_FIELDS
        config = {n: data.get(n) for n in names if data.get(n) not in (None, "")}
        config["key_columns"] = [k.strip() for k in data["key_columns"].split(",") if k.strip()]
        if data.get("page_size"):
            config["page_size"] = data["page_size"]
        return config

    def mapping_dict(self) -> dict[str, str]:
        return _lines_to_mapping(self.cleaned_data.get("mapping") or "")

    @staticmethod
    def initial_for(connector) -> dict[str, Any]:  # noqa: ANN001
        config = dict(connector.config)
        return {
            **config,
            "name": connector.name,
            "source": connector.source.code,
            "kind": connector.kind,
            "key_columns": ", ".join(config.get("key_columns", [])),
            "max_failures": connector.max_failures,
            "mapping": "\n".join(f"{c} = {f}" for c, f in connector.mapping.items()),
        }


class ScheduleForm(forms.Form):
    every_minutes = forms.IntegerField(label=_("Every N minutes"), required=False, min_value=1)
    cron = forms.CharField(
        label=_("Or cron"), required=False, help_text=_("minute hour day month weekday, e.g. */15 * * * *")
    )


class WebhookForm(forms.Form):
    source = forms.ModelChoiceField(Source.objects.filter(is_active=True), to_field_name="code", label=_("Source"))
