"""The roles crmhub ships with. Each is a Django group; admins may edit their members and
permissions, and add groups of their own."""
from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Role(models.TextChoices):
    ADMIN = "admin", _("Administrator")
    STEWARD = "steward", _("Data steward")
    SALES = "sales", _("Sales")
    SUPPORT = "support", _("Support")
    AUDITOR = "auditor", _("Auditor")
    API_CLIENT = "api_client", _("API client")


def user_roles(user) -> set[str]:  # noqa: ANN001
    """The role names of ``user`` (cached on the user object for the request)."""
    if user is None or not user.is_authenticated:
        return set()
    cached = getattr(user, "_crmhub_roles", None)
    if cached is None:
        cached = set(user.groups.values_list("name", flat=True))
        if user.is_superuser:
            cached.add(Role.ADMIN)
        user._crmhub_roles = cached
    return cached
