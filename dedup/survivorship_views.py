"""The admin page of survivorship rules (one rule per field). Thin: the service validates,
writes and audits."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from accounts.roles import Role
from accounts.views import role_required
from crmhub.models import Source
from dedup.choices import OverridePolicy, SurvivorshipStrategy, SurvivorshipTieBreak
from dedup.survivorship import RULE_ATTRS, survivorship_rules_list, survivorship_rules_set


@role_required(Role.ADMIN)
@require_http_methods(["GET", "POST"])
def survivorship_rules(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        changes: dict[str, dict] = {}
        for key, value in request.POST.items():
            if not key.startswith("rule:"):
                continue
            try:
                _prefix, field, attr = key.split(":", 2)
            except ValueError:
                messages.error(request, _("A cell of the form was malformed; nothing was saved."))
                return redirect("dedup:survivorship-rules")
            if attr in RULE_ATTRS:
                changes.setdefault(field, {})[attr] = value
        try:
            changed = survivorship_rules_set(actor=request.user, changes=changes, request=request)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, _("%(n)d survivorship rules changed.") % {"n": changed})
        return redirect("dedup:survivorship-rules")
    return render(
        request,
        "dedup/survivorship_rules.html",
        {
            "rules": survivorship_rules_list(),
            "strategies": SurvivorshipStrategy.choices,
            "tie_breaks": SurvivorshipTieBreak.choices,
            "policies": OverridePolicy.choices,
            "sources": Source.objects.order_by("-trust_rank", "code").only("code", "name", "trust_rank"),
        },
    )
