from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.authentication import token_allows_source
from accounts.models import ApiToken, AuditEvent, AuditEventKind
from accounts.services import api_token_create, api_token_revoke
from tests.factories import CustomerFactory, SourceFactory

pytestmark = pytest.mark.django_db


def api(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_it_stores_only_a_hash_of_the_key(steward):
    token, key = api_token_create(user=steward, name="etl", scopes=["read"])
    assert key.startswith("crm_") and key not in token.key_hash and token.key_prefix == key[:12]
    assert not ApiToken.objects.filter(key_hash=key).exists()
    assert api(key).get("/api/v1/customers/").status_code == 200


def test_it_enforces_scopes(steward):
    _token, read_key = api_token_create(user=steward, name="reader", scopes=["read"])
    _token, write_key = api_token_create(user=steward, name="writer", scopes=["write"])
    customer = CustomerFactory(email="a@example.com")
    assert api(read_key).get("/api/v1/customers/").status_code == 200
    assert api(write_key).get("/api/v1/customers/").status_code == 403
    # Revealing is reading, even though it is a POST.
    assert (
        api(read_key)
        .post(f"/api/v1/customers/{customer.pk}/reveal/", {"field": "id_number", "reason": "check"})
        .status_code
        == 200
    )
    assert (
        api(write_key)
        .post(f"/api/v1/customers/{customer.pk}/reveal/", {"field": "id_number", "reason": "check"})
        .status_code
        == 403
    )
    response = api(write_key).get("/api/v1/customers/")
    assert "scope" in response.json()["message"]


def test_it_refuses_revoked_and_expired_tokens_with_a_clear_message(steward, admin_user):
    token, key = api_token_create(
        user=steward, name="old", scopes=["read"], expires_at=timezone.now() + timedelta(seconds=60)
    )
    assert api(key).get("/api/v1/customers/").status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = api(key).get("/api/v1/customers/")
    assert response.status_code == 401 and "expired" in response.json()["message"]
    token2, key2 = api_token_create(user=steward, name="soon revoked", scopes=["read"])
    assert api_token_revoke(token=token2, actor=admin_user) is True
    assert api_token_revoke(token=token2, actor=admin_user) is False
    response = api(key2).get("/api/v1/customers/")
    assert response.status_code == 401 and "revoked" in response.json()["message"]
    assert api("crm_notatoken").get("/api/v1/customers/").status_code == 401
    with pytest.raises(ValidationError):
        api_token_create(user=steward, name="bad", scopes=["read"], expires_at=timezone.now() - timedelta(days=1))
    with pytest.raises(ValidationError):
        api_token_create(user=steward, name="bad", scopes=["everything"])


def test_it_limits_a_token_to_its_sources(steward, rf):
    crm, erp = SourceFactory(code="crm"), SourceFactory(code="erp")
    token, _key = api_token_create(user=steward, name="erp push", scopes=["push"], sources=[erp])
    request = rf.post("/")
    request.auth = token
    assert token_allows_source(request, erp) and not token_allows_source(request, crm)
    unlimited, _key = api_token_create(user=steward, name="all", scopes=["push"])
    request.auth = unlimited
    assert token_allows_source(request, crm)


def test_it_logs_token_use_at_most_every_ten_minutes(steward):
    token, key = api_token_create(user=steward, name="etl", scopes=["read"])
    client = api(key)
    for _ in range(5):
        client.get("/api/v1/customers/")
    uses = AuditEvent.objects.filter(kind=AuditEventKind.TOKEN_USE, object_id=str(token.pk))
    assert uses.count() == 1
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now() - timedelta(minutes=11))
    client.get("/api/v1/customers/")
    assert uses.count() == 2
    token.refresh_from_db()
    assert timezone.now() - token.last_used_at < timedelta(seconds=5)


def test_it_keeps_legacy_tokens_working_and_logged(steward):
    legacy = Token.objects.create(user=steward)
    client = api(legacy.key)
    assert client.get("/api/v1/customers/").status_code == 200
    client.get("/api/v1/customers/")
    assert AuditEvent.objects.filter(kind=AuditEventKind.TOKEN_USE, object_type="legacy_token").count() == 1


def test_it_issues_role_scoped_expiring_tokens_for_a_password(support, steward, settings):
    settings.CRMHUB_API_TOKEN_DAYS = 7
    key = (
        APIClient()
        .post("/api/v1/auth/token/", {"username": support.username, "password": "pw-sue_support"})
        .json()["token"]
    )
    token = ApiToken.objects.get(user=support)
    assert token.scopes == ["read"]
    assert timedelta(days=6) < token.expires_at - timezone.now() <= timedelta(days=7)
    assert api(key).get("/api/v1/customers/").status_code == 200
    APIClient().post("/api/v1/auth/token/", {"username": steward.username, "password": "pw-sam_steward"})
    assert ApiToken.objects.get(user=steward).scopes == ["push", "read", "write"]
    assert AuditEvent.objects.filter(kind=AuditEventKind.TOKEN_CREATED).count() == 2


def test_it_manages_tokens_in_the_browser(admin_user, steward):
    erp = SourceFactory(code="erp")
    client = Client()
    client.force_login(steward)
    assert client.get("/accounts/tokens/").status_code == 403
    client.force_login(admin_user)
    response = client.post(
        "/accounts/tokens/", {"user": steward.pk, "name": "erp sync", "scopes": ["read", "push"], "sources": [erp.pk]}
    )
    assert response.status_code == 200
    key = response.context["new_key"]
    token = ApiToken.objects.get(name="erp sync")
    assert token.user == steward and token.scopes == ["push", "read"] and list(token.sources.all()) == [erp]
    assert key in response.content.decode()
    # The key is shown once: the list never shows it again.
    assert key not in client.get("/accounts/tokens/").content.decode()
    client.post(f"/accounts/tokens/{token.pk}/revoke/")
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert api(key).get("/api/v1/customers/").status_code == 401
    assert AuditEvent.objects.filter(
        kind=AuditEventKind.TOKEN_REVOKED, object_id=str(token.pk), user=admin_user
    ).exists()
    # Missing scopes: a form error, nothing created.
    response = client.post("/accounts/tokens/", {"user": steward.pk, "name": "no scopes"})
    assert (
        response.status_code == 200
        and response.context["form"].errors
        and not ApiToken.objects.filter(name="no scopes").exists()
    )


def test_it_refuses_a_source_outside_the_tokens_sources(steward, rf):
    from rest_framework.views import APIView

    from accounts.authentication import TokenScopePermission

    crm, erp = SourceFactory(code="crm"), SourceFactory(code="erp")
    token, _key = api_token_create(user=steward, name="erp push", scopes=["push"], sources=[erp])

    class PushView(APIView):
        required_scope = "push"
        token_source_kwarg = "code"

    request = rf.post("/")
    request.auth = token
    request.method = "POST"
    for code, allowed in (("erp", True), ("crm", False)):
        view = PushView()
        view.kwargs = {"code": code}
        assert TokenScopePermission().has_permission(request, view) is allowed
    assert crm.pk and erp.pk
