"""The per-process cache of field policies (accounts.policy): a change made in one process applies
at once in every other. Another gunicorn worker is simulated by a cache built before the change
and put back after it (the changing process clears its own)."""

from __future__ import annotations

import copy

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts import policy as policy_module
from accounts.models import FieldPolicy
from accounts.policy import Access, field_access, policy_cache_clear
from accounts.roles import Role, user_roles
from accounts.services import field_policy_set
from crmhub.models import FieldDefinition
from crmhub.services import field_definitions_sync
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def _fresh(user):  # noqa: ANN001, ANN202
    """The user as the next request loads it (nothing memoized on the object)."""
    return type(user).objects.get(pk=user.pk)


def _other_worker_memory() -> dict:
    return copy.copy({k: copy.copy(v) for k, v in policy_module._cache.items()})


def _as_other_worker(memory: dict) -> None:
    policy_module._cache.clear()
    policy_module._cache.update(memory)


def test_a_cached_policy_costs_one_query_and_is_really_cached(support):
    policy_cache_clear()
    assert field_access(_fresh(support), "mobile") == Access.MASKED  # builds and caches
    user = _fresh(support)
    with CaptureQueriesContext(connection) as queries:
        assert field_access(user, "mobile") == Access.MASKED
        assert user_roles(user) == {Role.SUPPORT}
    assert len(queries) == 1  # the stamp; no groups, field definitions or field policies
    # A write that bypasses the stamp is not seen: proof that the answer came from the cache.
    FieldPolicy.objects.bulk_create(
        [FieldPolicy(role=Role.SUPPORT, field=FieldDefinition.objects.get(name="mobile"), access=Access.HIDDEN)]
    )
    assert field_access(_fresh(support), "mobile") == Access.MASKED
    policy_cache_clear()
    assert field_access(_fresh(support), "mobile") == Access.HIDDEN


def test_an_admins_policy_change_applies_at_once_in_another_worker(support, admin_user):
    policy_cache_clear()
    assert field_access(_fresh(support), "mobile") == Access.MASKED
    other = _other_worker_memory()
    assert other["policies"]  # the other worker holds the old policy
    field_policy_set(actor=admin_user, changes={(Role.SUPPORT, "mobile"): Access.HIDDEN})
    _as_other_worker(other)
    assert field_access(_fresh(support), "mobile") == Access.HIDDEN
    # and back to the default, in the other worker again
    other = _other_worker_memory()
    field_policy_set(actor=admin_user, changes={(Role.SUPPORT, "mobile"): None})
    _as_other_worker(other)
    assert field_access(_fresh(support), "mobile") == Access.MASKED


def test_a_field_definition_change_applies_in_another_worker(support):
    policy_cache_clear()
    assert field_access(_fresh(support), "company") == Access.VISIBLE
    other = _other_worker_memory()
    company = FieldDefinition.objects.get(name="company")
    company.sensitivity = "secret"  # the admin edits the data dictionary
    company.save()
    _as_other_worker(other)
    assert field_access(_fresh(support), "company") == Access.MASKED
    other = _other_worker_memory()
    company.is_active = False
    company.save()
    _as_other_worker(other)
    assert field_access(_fresh(support), "company") == Access.HIDDEN


def test_new_core_fields_from_the_sync_apply_in_another_worker(support):
    FieldDefinition.objects.filter(name="company").delete()
    policy_cache_clear()
    assert field_access(_fresh(support), "company") == Access.HIDDEN
    other = _other_worker_memory()
    assert field_definitions_sync() == 1  # bulk_create: no signals, bumps by itself
    _as_other_worker(other)
    assert field_access(_fresh(support), "company") == Access.VISIBLE


@pytest.mark.parametrize("how", ["user.groups.add", "group.user_set.add", "user.groups.remove", "user.groups.clear"])
def test_a_membership_change_applies_in_another_worker(django_user_model, how):
    user = make_user(django_user_model, "mover", Role.SALES)
    steward = Group.objects.get(name=Role.STEWARD)
    if how == "user.groups.remove" or how == "user.groups.clear":
        user.groups.add(steward)
    policy_cache_clear()
    before = field_access(_fresh(user), "id_number")
    other = _other_worker_memory()
    if how == "user.groups.add":
        user.groups.add(steward)
    elif how == "group.user_set.add":
        steward.user_set.add(user)
    elif how == "user.groups.remove":
        user.groups.remove(steward)
    else:
        user.groups.clear()
    _as_other_worker(other)
    after = _fresh(user)
    if how.endswith("add"):
        assert (before, field_access(after, "id_number")) == (Access.HIDDEN, Access.MASKED)
        assert user_roles(after) == {Role.SALES, Role.STEWARD}
    elif how == "user.groups.remove":
        assert (before, field_access(after, "id_number")) == (Access.MASKED, Access.HIDDEN)
        assert user_roles(after) == {Role.SALES}
    else:
        assert user_roles(after) == set()
        assert field_access(after, "mobile") == Access.HIDDEN  # no role: public fields only


def test_a_renamed_group_applies_in_another_worker(support):
    policy_cache_clear()
    assert user_roles(_fresh(support)) == {Role.SUPPORT}
    other = _other_worker_memory()
    group = Group.objects.get(name=Role.SUPPORT)
    group.name = "helpdesk"
    group.save()
    _as_other_worker(other)
    assert user_roles(_fresh(support)) == {"helpdesk"}
    assert field_access(_fresh(support), "mobile") == Access.HIDDEN  # an unknown role: no-role defaults


def test_nothing_is_cached_without_the_stamp_row(support):
    from accounts.models import PolicyStamp

    PolicyStamp.objects.all().delete()
    policy_cache_clear()
    assert field_access(_fresh(support), "mobile") == Access.MASKED
    assert not policy_module._cache["policies"]
    FieldPolicy.objects.bulk_create(
        [FieldPolicy(role=Role.SUPPORT, field=FieldDefinition.objects.get(name="mobile"), access=Access.HIDDEN)]
    )
    assert field_access(_fresh(support), "mobile") == Access.HIDDEN
