"""Who may do what with duplicates: stewards and admins decide; auditors may look."""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from accounts.roles import Role, user_roles

REVIEW_ROLES = {Role.ADMIN, Role.STEWARD}
VIEW_ROLES = REVIEW_ROLES | {Role.AUDITOR}


def can_review(user) -> bool:  # noqa: ANN001
    return bool(user_roles(user) & REVIEW_ROLES)


def can_view(user) -> bool:  # noqa: ANN001
    return bool(user_roles(user) & VIEW_ROLES)


class CanViewCandidates(BasePermission):
    message = "Only data stewards, admins and auditors may see match candidates."

    def has_permission(self, request, view) -> bool:  # noqa: ANN001
        return can_view(request.user)


class CanDecide(BasePermission):
    message = "Only data stewards and admins may approve, reject, merge or unmerge."

    def has_permission(self, request, view) -> bool:  # noqa: ANN001
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return can_view(request.user)
        return can_review(request.user)
