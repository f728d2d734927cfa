from __future__ import annotations

import pytest
from django.test import override_settings

from crmhub.choices import CustomerStatus
from tests.factories import CustomerFactory, InteractionFactory

pytestmark = pytest.mark.django_db


def test_it_sends_anonymous_visitors_to_the_login_page(client):
    response = client.get("/")
    assert response.status_code == 302 and response.url.startswith("/login/")


def test_it_logs_in_and_shows_the_home_counts(client, steward):
    CustomerFactory.create_batch(2)
    response = client.post("/login/", {"username": steward.username, "password": "pw-sam_steward"}, follow=True)
    assert response.status_code == 200
    assert response.context["counts"]["customers"] == 2
    assert "recent_runs" in response.context["counts"]


@override_settings(LANGUAGE_CODE="zh-hans")
def test_it_speaks_chinese_by_default_and_english_on_request(client, steward):
    client.force_login(steward)
    assert "客户" in client.get("/").content.decode()
    client.post("/i18n/setlang/", {"language": "en", "next": "/"})
    assert "Customers" in client.get("/").content.decode()


def test_it_masks_values_on_the_customer_page_for_support(client, support):
    customer = CustomerFactory(full_name="张伟", mobile="+8613800138000")
    InteractionFactory(customer=customer, title="投诉处理")
    client.force_login(support)
    html = client.get(customer.get_absolute_url()).content.decode()
    assert "138****8000" in html and "13800138000" not in html
    assert "投诉处理" in html


def test_it_redirects_a_merged_customer_page_to_the_survivor(client, steward):
    survivor = CustomerFactory()
    merged = CustomerFactory(status=CustomerStatus.MERGED, merged_into=survivor)
    client.force_login(steward)
    response = client.get(merged.get_absolute_url())
    assert response.status_code == 302 and response.url == survivor.get_absolute_url()


def test_it_searches_customers_in_the_browser(client, steward):
    wanted = CustomerFactory(mobile="+8613800138000")
    CustomerFactory(mobile="+8613900139000")
    client.force_login(steward)
    response = client.get("/customers/", {"q": "138-0013-8000"})
    assert [c.pk for c, _ in response.context["rows"]] == [wanted.pk]
    partial = client.get("/customers/", {"q": "138-0013-8000"}, HTTP_HX_REQUEST="true")
    assert b"<html" not in partial.content


def test_it_sends_security_headers(client, steward):
    client.force_login(steward)
    response = client.get("/")
    assert "default-src 'self'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_it_reports_health_of_database_and_broker(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["database"]["ok"] and body["broker"]["ok"]


def test_it_reports_503_when_the_broker_is_down(client):
    with override_settings(CELERY_BROKER_URL="redis://127.0.0.1:1/0", CELERY_BROKER_CONNECTION_TIMEOUT=1):
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["broker"]["ok"] is False


def test_it_lists_sources_and_the_data_dictionary_in_the_admin(client, admin_user):
    client.force_login(admin_user)
    assert client.get("/admin/crmhub/source/").status_code == 200
    page = client.get("/admin/crmhub/fielddefinition/").content.decode()
    assert "mobile" in page and "id_number" in page
    assert client.get("/admin/auth/group/").status_code == 200


def test_sessions_expire_when_idle_but_are_not_written_on_every_request(client, steward, settings):
    from django.contrib.sessions.models import Session

    client.force_login(steward)
    client.get("/")
    key = client.session.session_key
    first = Session.objects.get(session_key=key).expire_date
    client.get("/")  # within the refresh interval: no write
    assert Session.objects.get(session_key=key).expire_date == first
    settings.CRMHUB_SESSION_REFRESH_SECONDS = 0  # the interval has passed: the expiry moves on
    client.get("/")
    assert Session.objects.get(session_key=key).expire_date > first
