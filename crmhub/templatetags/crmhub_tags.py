"""Display helpers for customer values (already filtered and masked by accounts.policy)."""

from __future__ import annotations

from datetime import date, datetime

from django import template
from django.utils.translation import gettext as _

from crmhub.choices import Gender

register = template.Library()


@register.filter
def field_value(value, field=None):  # noqa: ANN001, ANN201
    """A person-readable form of one dictionary value: choices by label, yes/no, lists joined."""
    if value is None or value == "" or value == []:
        return ""
    if isinstance(value, bool):
        return _("Yes") if value else _("No")
    if isinstance(value, (list, tuple)):
        return "、".join(str(v) for v in value)
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if getattr(field, "name", None) == "gender" and value in Gender.values:
        return Gender(value).label
    return value


@register.filter
def field_label(name: str, fields) -> str:  # noqa: ANN001
    """The dictionary label of ``name`` (``fields``: name -> FieldDefinition), else the name."""
    field = fields.get(name) if fields else None
    return field.label if field is not None else name


@register.filter
def match_comparison_label(code: str) -> str:
    """A matcher comparison (name, mobile, ...) in the reader's language; unknown codes as they are."""
    from dedup.choices import MATCH_COMPARISON_LABELS

    return str(MATCH_COMPARISON_LABELS[code]) if code in MATCH_COMPARISON_LABELS else code


@register.filter
def match_level_label(code: str) -> str:
    """A matcher comparison level (exact, sound_alike, ...) in the reader's language."""
    from dedup.choices import MATCH_LEVEL_LABELS

    return str(MATCH_LEVEL_LABELS[code]) if code in MATCH_LEVEL_LABELS else code


@register.filter
def channel_label(value: str) -> str:
    """The label of a change channel (web, api, import, connector, merge, ...)."""
    from crmhub.choices import ChangeChannel

    return str(ChangeChannel(value).label) if value in ChangeChannel.values else value


@register.filter
def ref_url(ref: str) -> str:
    """Where a history reference leads: an import run's page, a merge on the customer page."""
    from django.urls import reverse

    kind, _sep, number = (ref or "").partition(":")
    if not number.isdigit():
        return ""
    if kind == "import_run":
        return reverse("imports:run-detail", args=[int(number)])
    if kind == "merge":
        return f"#merge-{number}"
    return ""
