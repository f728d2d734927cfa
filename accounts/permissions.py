"""Row-level access: the single point where querysets are narrowed to what a user may reach."""
from __future__ import annotations

from django.db.models import QuerySet

from accounts.roles import Role, user_roles

# Roles that see every customer; the others see only the rows scoped to them.
UNSCOPED_ROLES = {Role.ADMIN, Role.STEWARD, Role.SUPPORT, Role.AUDITOR, Role.API_CLIENT}


def restrict_customers(qs: QuerySet, user) -> QuerySet:  # noqa: ANN001
    """Customers ``user`` may reach: all for unscoped roles; for sales, own, team and region."""
    roles = user_roles(user)
    if roles & UNSCOPED_ROLES:
        return qs
    if Role.SALES in roles:
        from django.db.models import Q

        scope = Q(owner=user)
        profile = getattr(user, "crmhub_profile", None)
        if profile is not None and profile.team:
            scope |= Q(team=profile.team)
        if profile is not None and profile.region:
            scope |= Q(region=profile.region)
        return qs.filter(scope)
    return qs.none()
