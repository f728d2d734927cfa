"""Row-level access: the single point where querysets are narrowed to what a user may reach.

Two mechanisms:
- ``restrict_customers``: customers scoped for sales by owner, team and region
  (``UserProfile``); the other roles see every customer.
- ``restrict(qs, user, action)``: object permissions with django-guardian for sources, and
  later connectors, match rules and webhook subscriptions. A steward manages only the
  objects granted to them or to one of their groups (``accounts.services.object_permission_grant``).
"""

from __future__ import annotations

from django.db.models import Model, Q, QuerySet
from django.http import Http404

from accounts.roles import Role, user_roles

# Roles that see every customer; the others see only the rows scoped to them.
UNSCOPED_ROLES = {Role.ADMIN, Role.STEWARD, Role.SUPPORT, Role.AUDITOR, Role.API_CLIENT}

# Guardian-protected objects: roles that reach all of them without a grant, per action.
UNRESTRICTED_ROLES = {
    "view": {Role.ADMIN, Role.AUDITOR},
    "change": {Role.ADMIN},
    "delete": {Role.ADMIN},
}
ACTIONS = ("view", "change", "delete")


def restrict_customers(qs: QuerySet, user) -> QuerySet:  # noqa: ANN001
    """Customers ``user`` may reach: all for unscoped roles; for sales, own, team and region."""
    roles = user_roles(user)
    if roles & UNSCOPED_ROLES:
        return qs
    if Role.SALES in roles:
        scope = Q(owner=user)
        profile = getattr(user, "crmhub_profile", None)
        if profile is not None and profile.team:
            scope |= Q(team=profile.team)
        if profile is not None and profile.region:
            scope |= Q(region=profile.region)
        return qs.filter(scope)
    return qs.none()


def permission_codename(model: type[Model], action: str) -> str:
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
    return f"{model._meta.app_label}.{action}_{model._meta.model_name}"


def restrict(qs: QuerySet, user, action: str = "view") -> QuerySet:  # noqa: ANN001
    """The rows of ``qs`` on which ``user`` may perform ``action``.

    Admins (and auditors, for viewing) reach everything; everyone else reaches the rows
    granted by an object permission, or all rows with a global (model-level) permission.
    Granting ``change`` implies ``view``.
    """
    from guardian.shortcuts import get_objects_for_user

    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
    if user is None or not user.is_authenticated:
        return qs.none()
    if user_roles(user) & UNRESTRICTED_ROLES[action]:
        return qs
    perms = [permission_codename(qs.model, action)]
    if action == "view":
        perms.append(permission_codename(qs.model, "change"))
    return get_objects_for_user(user, perms, klass=qs, any_perm=True, accept_global_perms=True, with_superuser=True)


def get_object_for_user(qs: QuerySet, user, action: str = "view", **lookup):  # noqa: ANN001, ANN003, ANN201
    """One object ``user`` may act on, else 404 (an invisible object does not exist for them)."""
    obj = restrict(qs, user, action).filter(**lookup).first()
    if obj is None:
        raise Http404("Not found")
    return obj
