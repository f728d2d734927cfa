from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from accounts.roles import DEFAULT_ROLE_PERMISSIONS, Role, roles_sync, user_roles

pytestmark = pytest.mark.django_db


def test_it_ships_every_role_with_its_default_permissions():
    # The migrations did it already: nothing left to grant.
    assert roles_sync() == 0
    for role in Role.values:
        group = Group.objects.get(name=role)
        perms = {f"{a}.{c}" for a, c in group.permissions.values_list("content_type__app_label", "codename")}
        assert set(DEFAULT_ROLE_PERMISSIONS[role]) <= perms, role


def test_it_restores_missing_roles_without_removing_an_admins_additions():
    Group.objects.filter(name=Role.SUPPORT).delete()
    steward = Group.objects.get(name=Role.STEWARD)
    extra = steward.permissions.model.objects.get(codename="approve_exports")
    steward.permissions.add(extra)
    assert roles_sync() == 1
    assert Group.objects.get(name=Role.SUPPORT).permissions.get().codename == "reveal_values"
    assert steward.permissions.filter(codename="approve_exports").exists()


def test_it_counts_superusers_as_admins(admin_user, outsider):
    assert Role.ADMIN in user_roles(admin_user)
    assert user_roles(outsider) == set()
