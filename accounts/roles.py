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
        from accounts.policy import cached_group_names

        cached = set(cached_group_names(user))
        if user.is_superuser:
            cached.add(Role.ADMIN)
        user._crmhub_roles = cached
    return cached


# Model permissions each role's group carries by default (object permissions come on top).
DEFAULT_ROLE_PERMISSIONS: dict[str, list[str]] = {
    Role.ADMIN: [
        "accounts.export_customers",
        "accounts.approve_exports",
        "accounts.reveal_values",
        "accounts.view_auditevent",
    ],
    Role.STEWARD: ["accounts.export_customers", "accounts.reveal_values"],
    Role.SUPPORT: ["accounts.reveal_values"],
    Role.AUDITOR: ["accounts.view_auditevent"],
    Role.SALES: [],
    Role.API_CLIENT: [],
}


def roles_sync() -> int:
    """Create missing role groups and give them their default permissions (never removes any
    an admin added). Returns the number of permissions granted."""
    from django.contrib.auth.models import Group, Permission

    granted = 0
    for role, perms in DEFAULT_ROLE_PERMISSIONS.items():
        group, _created = Group.objects.get_or_create(name=role)
        have = {f"{app}.{code}" for app, code in group.permissions.values_list("content_type__app_label", "codename")}
        for perm in perms:
            if perm in have:
                continue
            app_label, codename = perm.split(".")
            group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
            granted += 1
    return granted
