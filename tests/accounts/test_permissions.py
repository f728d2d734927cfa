from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework.test import APIClient

from accounts.models import AuditEvent, AuditEventKind, UserProfile
from accounts.permissions import get_object_for_user, restrict
from accounts.services import object_permission_grant, object_permission_revoke
from crmhub.models import Source
from tests.conftest import make_user
from tests.factories import CustomerFactory, SourceFactory, SourceRecordFactory

pytestmark = pytest.mark.django_db


def test_it_lets_a_steward_manage_only_the_sources_granted(admin_user, steward):
    crm, erp, pos = SourceFactory(code="crm"), SourceFactory(code="erp"), SourceFactory(code="pos")
    assert list(restrict(Source.objects.all(), steward, "change")) == []
    object_permission_grant(actor=admin_user, grantee=steward, obj=erp, action="change")
    assert list(restrict(Source.objects.all(), steward, "change")) == [erp]
    assert list(restrict(Source.objects.all(), steward, "view")) == [erp]  # change implies view
    assert list(restrict(Source.objects.all(), steward, "delete")) == []
    assert get_object_for_user(Source.objects.all(), steward, "change", code="erp") == erp
    with pytest.raises(Http404):
        get_object_for_user(Source.objects.all(), steward, "change", code="crm")
    # Admins reach everything without grants.
    assert set(restrict(Source.objects.all(), admin_user, "delete")) == {crm, erp, pos}
    object_permission_revoke(actor=admin_user, grantee=steward, obj=erp, action="change")
    assert list(restrict(Source.objects.all(), steward, "change")) == []
    events = AuditEvent.objects.filter(kind=AuditEventKind.PERMISSION_CHANGE, object_type="crmhub.source")
    assert [e.details["action"] for e in events.order_by("id")] == ["grant", "revoke"]
    assert events.first().details["permission"] == "crmhub.change_source"


def test_it_grants_through_a_group(admin_user, django_user_model):
    erp = SourceFactory(code="erp")
    team = Group.objects.create(name="erp-stewards")
    member = make_user(django_user_model, "gina", "steward")
    member.groups.add(team)
    object_permission_grant(actor=admin_user, grantee=team, obj=erp, action="view")
    assert list(restrict(Source.objects.all(), member, "view")) == [erp]
    assert list(restrict(Source.objects.all(), member, "change")) == []


def test_it_lets_only_admins_grant(steward, outsider):
    erp = SourceFactory(code="erp")
    with pytest.raises(PermissionDenied):
        object_permission_grant(actor=steward, grantee=steward, obj=erp, action="change")
    assert list(restrict(Source.objects.all(), steward, "change")) == []
    assert list(restrict(Source.objects.all(), outsider, "view")) == []
    with pytest.raises(ValueError):
        restrict(Source.objects.all(), steward, "explode")


@pytest.fixture
def scoped(sales):  # noqa: ANN001, ANN201
    UserProfile.objects.create(user=sales, team="east", region="")
    mine = CustomerFactory(team="east", full_name="东区客户")
    owned = CustomerFactory(team="north", owner=sales)
    theirs = CustomerFactory(team="west", full_name="西区客户", member_no="W001")
    SourceRecordFactory(customer=theirs)
    return mine, owned, theirs


def test_it_keeps_sales_to_their_team_by_url(client, sales, scoped):
    mine, owned, theirs = scoped
    client.force_login(sales)
    assert client.get(mine.get_absolute_url()).status_code == 200
    assert client.get(owned.get_absolute_url()).status_code == 200
    assert client.get(theirs.get_absolute_url()).status_code == 404
    assert client.get(f"/customers/{theirs.pk}/history/").status_code == 404
    listed = client.get("/customers/").context["rows"]
    assert {c.pk for c, _ in listed} == {mine.pk, owned.pk}


def test_it_keeps_sales_to_their_team_by_api_id(sales, scoped):
    mine, owned, theirs = scoped
    api = APIClient()
    api.force_authenticate(sales)
    assert api.get(f"/api/v1/customers/{mine.pk}/").status_code == 200
    for path in [
        f"/api/v1/customers/{theirs.pk}/",
        f"/api/v1/customers/{theirs.pk}/source-records/",
        f"/api/v1/customers/{theirs.pk}/interactions/",
        f"/api/v1/customers/{theirs.pk}/history/",
    ]:
        assert api.get(path).status_code == 404, path
    assert api.get("/api/v1/customers/", {"q": "W001"}).json()["results"] == []
    ids = {c["id"] for c in api.get("/api/v1/customers/").json()["results"]}
    assert ids == {mine.pk, owned.pk}


def test_it_shows_users_without_a_role_no_customer(client, outsider, scoped):
    mine, _, _ = scoped
    client.force_login(outsider)
    assert client.get(mine.get_absolute_url()).status_code == 404


def test_it_grants_and_revokes_sources_in_the_browser(client, admin_user, steward):
    erp = SourceFactory(code="erp")
    client.force_login(steward)
    assert client.get("/accounts/sources/erp/permissions/").status_code == 403
    client.force_login(admin_user)
    response = client.post("/accounts/sources/erp/permissions/", {"user": steward.pk, "action": "change"})
    assert response.status_code == 302
    assert list(restrict(Source.objects.all(), steward, "change")) == [erp]
    page = client.get("/accounts/sources/erp/permissions/")
    assert page.context["grants"] == [{"kind": "user", "grantee": steward, "action": "change"}]
    both = client.post("/accounts/sources/erp/permissions/", {"user": steward.pk, "group": 1, "action": "view"})
    assert both.status_code == 200 and both.context["form"].errors
    client.post("/accounts/sources/erp/permissions/", {"revoke": f"user:{steward.pk}:change"})
    assert list(restrict(Source.objects.all(), steward, "change")) == []
    assert AuditEvent.objects.filter(kind=AuditEventKind.PERMISSION_CHANGE, object_type="crmhub.source").count() == 2


def test_it_refuses_a_malformed_revoke(client, admin_user):
    SourceFactory(code="erp")
    client.force_login(admin_user)
    response = client.post("/accounts/sources/erp/permissions/", {"revoke": "user:1:explode"}, follow=True)
    assert response.status_code == 200 and "malformed" in response.content.decode()
    assert "erp" in client.get("/accounts/policies/").content.decode()
