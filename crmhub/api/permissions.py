from __future__ import annotations

from rest_framework.permissions import BasePermission

from accounts.roles import Role, user_roles


class HasAnyRole(BasePermission):
    """Allow users holding one of ``roles`` (set on a subclass)."""

    roles: frozenset[str] = frozenset()
    message = "Your role does not give access to this endpoint."

    def has_permission(self, request, view) -> bool:  # noqa: ANN001
        return bool(user_roles(request.user) & self.roles)


class CanReadChangeFeed(HasAnyRole):
    roles = frozenset({Role.ADMIN, Role.STEWARD, Role.API_CLIENT})
    message = "Reading the change feed needs the admin, steward or API-client role."
