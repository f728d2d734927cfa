from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.utils import timezone

from accounts.models import AccessLevel, AuditEvent, AuditEventKind, FieldPolicy
from accounts.policy import field_access
from crmhub.models import FieldDefinition

pytestmark = pytest.mark.django_db


def test_it_logs_logins_failures_and_logouts(client, steward):
    client.post("/login/", {"username": steward.username, "password": "wrong"})
    client.post("/login/", {"username": steward.username, "password": "pw-sam_steward"})
    client.post("/logout/")
    events = list(AuditEvent.objects.filter(kind__in=["login", "login_failed", "logout"]).order_by("id"))
    assert [e.kind for e in events] == ["login_failed", "login", "logout"]
    assert all(e.username == steward.username for e in events)
    assert events[0].user is None and events[1].user == steward
    assert events[1].ip_address == "127.0.0.1"
    assert "wrong" not in str(events[0].details) and "wrong" not in events[0].reason


def test_it_locks_a_login_after_repeated_failures_with_a_clear_message(client, steward, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(3):
        client.post("/login/", {"username": steward.username, "password": "wrong"})
    response = client.post(
        "/login/", {"username": steward.username, "password": "pw-sam_steward"}, HTTP_ACCEPT_LANGUAGE="en"
    )
    assert response.status_code == 429
    html = response.content.decode()
    assert 'id="locked-out"' in html and "After 3 failed attempts" in html
    assert "_auth_user_id" not in client.session
    assert AuditEvent.objects.filter(kind=AuditEventKind.LOGIN_FAILED).count() >= 3


def test_it_keeps_the_audit_log_append_only(admin_user):
    event = AuditEvent.objects.create(kind=AuditEventKind.REVEAL, username="x")
    event.reason = "changed"
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        event.delete()
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(pk=event.pk).update(reason="changed")
    with pytest.raises(PermissionError):
        AuditEvent.objects.all().delete()
    # The admin offers no add, change or delete either.
    client = Client()
    client.force_login(admin_user)
    assert client.get(f"/admin/accounts/auditevent/{event.pk}/delete/").status_code == 403
    assert client.get("/admin/accounts/auditevent/add/").status_code == 403
    assert client.post(f"/admin/accounts/auditevent/{event.pk}/change/", {"reason": "x"}).status_code == 403
    assert AuditEvent.objects.get(pk=event.pk).reason == ""


def test_it_shows_the_audit_log_to_auditors_with_filters(client, auditor, support, steward):
    AuditEvent.objects.create(
        kind=AuditEventKind.REVEAL,
        user=support,
        username=support.username,
        object_type="customer",
        object_id="7",
        field="mobile",
        reason="ticket 1",
    )
    AuditEvent.objects.create(
        kind=AuditEventKind.EXPORT, user=steward, username=steward.username, at=timezone.now() - timedelta(days=10)
    )
    client.force_login(support)
    assert client.get("/accounts/audit/").status_code == 403
    client.force_login(auditor)
    page = client.get("/accounts/audit/", {"kind": "reveal"})
    assert [e.kind for e in page.context["page"]] == ["reveal"]
    assert "ticket 1" in page.content.decode()
    assert [e.username for e in client.get("/accounts/audit/", {"username": "SAM_STEWARD"}).context["page"]] == [
        steward.username
    ]
    today = timezone.localdate()
    recent = client.get("/accounts/audit/", {"date_from": today - timedelta(days=1), "kind": ""}).context["page"]
    assert AuditEventKind.EXPORT not in [e.kind for e in recent]
    assert [
        e.kind for e in client.get("/accounts/audit/", {"object_type": "customer", "object_id": "7"}).context["page"]
    ] == ["reveal"]
    bad = client.get("/accounts/audit/", {"date_from": today, "date_to": today - timedelta(days=3)})
    assert "The start date is after the end date." in bad.content.decode() or bad.context["form"].errors


def test_it_paginates_the_audit_log(client, auditor):
    for i in range(120):
        AuditEvent.objects.create(kind=AuditEventKind.TOKEN_USE, username=f"u{i}")
    client.force_login(auditor)
    page = client.get("/accounts/audit/", {"kind": "token_use", "page": 3}).context["page"]
    assert page.number == 3 and len(page) == 20


def test_it_edits_the_policy_matrix_and_logs_before_and_after(client, admin_user, support, steward):
    mobile = FieldDefinition.objects.get(name="mobile")
    custom = FieldDefinition.objects.create(
        name="shoe_size", label_en="Shoe size", label_zh="鞋码", sensitivity="internal"
    )
    client.force_login(steward)
    assert client.get("/accounts/policies/").status_code == 403
    client.force_login(admin_user)
    page = client.get("/accounts/policies/")
    assert 'name="cell:support:shoe_size"' in page.content.decode()  # custom fields included
    response = client.post(
        "/accounts/policies/",
        {
            "cell:support:mobile": str(AccessLevel.HIDDEN),
            "cell:support:shoe_size": str(AccessLevel.MASKED),
            "cell:sales:mobile": "",
        },
    )
    assert response.status_code == 302
    assert FieldPolicy.objects.get(role="support", field=mobile).access == AccessLevel.HIDDEN
    assert field_access(support, "mobile") == AccessLevel.HIDDEN
    assert field_access(support, "shoe_size") == AccessLevel.MASKED
    events = AuditEvent.objects.filter(kind=AuditEventKind.POLICY_CHANGE).order_by("object_id")
    assert [e.object_id for e in events] == ["support:mobile", "support:shoe_size"]
    assert events[0].details == {
        "role": "support",
        "before": {"override": None, "effective": "masked"},
        "after": {"override": "hidden", "effective": "hidden"},
    }
    # Back to the default: the override row goes, and that is logged too.
    client.post("/accounts/policies/", {"cell:support:mobile": ""})
    assert not FieldPolicy.objects.filter(role="support", field=mobile).exists()
    last = AuditEvent.objects.filter(kind=AuditEventKind.POLICY_CHANGE).order_by("-id").first()
    assert last.details["after"] == {"override": None, "effective": "masked"}
    # A malformed or unknown cell changes nothing.
    client.post("/accounts/policies/", {"cell:nobody:mobile": "1"})
    client.post("/accounts/policies/", {"cell:support:mobile": "9"})
    assert not FieldPolicy.objects.filter(role="support", field=mobile).exists()
    assert custom.policies.count() == 1


def test_it_logs_role_and_permission_changes(admin_user, outsider):
    client = Client()
    client.force_login(admin_user)
    group = Group.objects.get(name="support")
    # Through the Django admin (roles are groups, edited there).
    response = client.post(
        f"/admin/auth/user/{outsider.pk}/change/",
        {
            "username": outsider.username,
            "groups": [group.pk],
            "is_active": "on",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
            "initial-date_joined_0": "2026-01-01",
            "initial-date_joined_1": "00:00:00",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    event = AuditEvent.objects.filter(kind=AuditEventKind.PERMISSION_CHANGE, object_type="user").latest("id")
    assert event.details == {"user": outsider.username, "groups": ["support"], "action": "add"}
    assert event.user == admin_user
    group.permissions.add(Permission.objects.get(codename="export_customers"))
    event = AuditEvent.objects.filter(kind=AuditEventKind.PERMISSION_CHANGE, object_type="group").latest("id")
    assert event.details["permissions"] == ["accounts.export_customers"]
