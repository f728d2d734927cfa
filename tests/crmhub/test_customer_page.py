"""The 360° customer page: golden record, quality flags, source records, the interaction timeline
(filters, paging), tags and segments, merges; the edit form and one-click restore from history,
with the optimistic version check; masking per role."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.utils import timezone

from crmhub.choices import ChangeChannel, CustomerStatus
from crmhub.context import change_context
from crmhub.editing import customer_update
from crmhub.models import Customer
from tests.factories import CustomerFactory, InteractionFactory, SourceFactory, SourceRecordFactory

pytestmark = pytest.mark.django_db

KINDS = ["order", "ticket", "visit", "call"]


@pytest.fixture
def vip(steward):  # noqa: ANN001, ANN201
    customer = CustomerFactory(
        full_name="张伟",
        mobile="+8613800138000",
        company="甲公司",
        tags=["vip", "gold"],
        quality_flags={"email": "bounced"},
    )
    erp = SourceFactory(code="erp", name="ERP 系统")
    SourceRecordFactory(source=erp, customer=customer, source_key="E-1")
    SourceRecordFactory(
        source=SourceFactory(code="shop", name="网店"),
        customer=customer,
        source_key="S-9",
        flags={"mobile": "not a valid phone number"},
    )
    now = timezone.now()
    for i in range(210):
        InteractionFactory(
            customer=customer,
            source=erp,
            kind=KINDS[i % 4],
            title=f"item {i:03d}",
            occurred_at=now - dt.timedelta(hours=i),
            amount=Decimal("500.00") if i % 4 == 0 else None,
        )
    with change_context(channel=ChangeChannel.IMPORT, ref="import_run:42"):
        customer.job_title = "采购"
        customer.save()
    customer.refresh_from_db()
    return customer


def page(client, user, customer, **params):  # noqa: ANN001, ANN003, ANN201
    client.force_login(user)
    return client.get(f"/customers/{customer.pk}/", params, HTTP_ACCEPT_LANGUAGE="en")


def test_it_shows_the_whole_customer_on_one_page(client, steward, vip):
    response = page(client, steward, vip)
    assert response.status_code == 200
    html = response.content.decode()
    # Golden record, quality flags with their source, source records with source and last sync.
    assert '<span class="value">+8613800138000</span>' in html
    assert 'data-flag="email"' in html and "bounced" in html
    assert 'data-flag="mobile"' in html and "not a valid phone number" in html
    assert "ERP 系统" in html and "E-1" in html and "S-9" in html and vip.source_records.first().last_seen_at
    # Tags and segments.
    assert 'data-tag="vip"' in html and 'data-tag="gold"' in html
    assert 'data-segment="high_value"' in html and 'data-segment="active_buyer"' in html
    # One timeline across channels, newest first, a page of 50 of 210.
    items = re.findall(r'data-kind="(\w+)"', html)
    assert len(items) == 50 and set(items) == set(KINDS)
    assert "item 000" in html and "item 049" in html and "item 050" not in html
    assert "Page 1 of 5 · 210 interactions" in html
    # History: the import with a link to its run.
    assert 'href="/imports/runs/42/"' in html


def test_it_filters_and_pages_the_timeline(client, steward, vip):
    html = page(client, steward, vip, kind=["call", "visit"], page=2).content.decode()
    kinds = re.findall(r'data-kind="(\w+)"', html)
    assert set(kinds) == {"call", "visit"} and len(kinds) == 50
    assert "Page 2 of 3 · 104 interactions" in html
    # htmx asks for the timeline alone.
    client.force_login(steward)
    partial = client.get(
        f"/customers/{vip.pk}/", {"kind": "order", "page": 2}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="timeline"
    )
    body = partial.content.decode()
    assert "<html" not in body and "Golden record" not in body
    assert re.findall(r'data-kind="(\w+)"', body) == ["order"] * 3  # 53 orders: 50 on page 1, 3 on page 2


def test_it_writes_each_timeline_row_escaped_in_the_viewers_time_zone(client, support):
    customer = CustomerFactory()
    at = dt.datetime(2026, 3, 1, 16, 30, tzinfo=dt.UTC)  # 2026-03-02 00:30 in Asia/Shanghai
    InteractionFactory(
        customer=customer,
        source=SourceFactory(name="<b>shop</b>"),
        kind="ticket",
        title="<script>x</script>",
        status="open & waiting",
        occurred_at=at,
        amount=Decimal("12.50"),
        currency="CNY",
    )
    InteractionFactory(customer=customer, source=None, kind="call", title="no source", status="", occurred_at=at)
    html = page(client, support, customer).content.decode()
    assert (
        '<li class="kind-ticket" data-kind="ticket"><time datetime="2026-03-02T00:30:00+08:00">2026-03-02 00:30</time>'
    ) in html
    assert '<span class="badge">Service ticket</span> &lt;script&gt;x&lt;/script&gt; · 12.50 CNY' in html
    assert '<span class="muted">(open &amp; waiting)</span> <span class="muted">&lt;b&gt;shop&lt;/b&gt;</span>' in html
    assert "<script>x" not in html and "<b>shop" not in html
    assert '<span class="badge">Call</span> no source\n     <span class="muted"></span></li>' in html
    empty = page(client, support, CustomerFactory()).content.decode()
    assert "No interactions yet." in empty


def test_it_masks_the_page_for_support_and_offers_no_edit(client, support, vip):
    html = page(client, support, vip).content.decode()
    assert "138****8000" in html and "13800138000" not in html
    assert "张*" in html and "张伟" not in html  # the name in the title is masked too
    assert f'action="/customers/{vip.pk}/edit/"' not in html
    assert "/restore/" not in html


def test_it_keeps_the_page_to_a_few_queries(client, steward, vip, django_assert_max_num_queries):
    client.force_login(steward)
    page(client, steward, vip)  # warm the caches a first request fills
    with django_assert_max_num_queries(24):
        assert client.get(f"/customers/{vip.pk}/").status_code == 200


def test_it_redirects_an_old_id_to_the_survivor(client, support):
    survivor = CustomerFactory()
    merged = CustomerFactory(status=CustomerStatus.MERGED, merged_into=survivor)
    response = page(client, support, merged)
    assert response.status_code == 302 and response["Location"] == f"/customers/{survivor.pk}/"


def test_it_lists_merges_and_unmerges(client, steward):
    from dedup import services

    a, b = CustomerFactory(full_name="张伟"), CustomerFactory(full_name="张伟")
    merge = services.customers_merge(customers=[a.pk, b.pk], survivor=a.pk, acting_user=steward)
    html = page(client, steward, a).content.decode()
    assert f'id="merge-{merge.pk}"' in html and f'href="/customers/{b.pk}/"' in html
    services.merge_undo(merge=merge, acting_user=steward)
    html = page(client, steward, b).content.decode()  # b is back, and its page names the merge it went through
    assert f'id="merge-{merge.pk}"' in html and "undone" in html


#
# Editing and restoring
#


def edit_form(html: str) -> dict[str, str]:
    form = re.search(r'<form method="post" action="/customers/\d+/edit/".*?</form>', html, re.S).group(0)
    values = dict(re.findall(r'<input type="(?:text|hidden|date)" name="(\w+)" value="([^"]*)"', form))
    for name, options in re.findall(r'<select name="(\w+)"[^>]*>(.*?)</select>', form, re.S):
        selected = re.search(r'<option value="([^"]*)" selected>', options)
        values[name] = selected.group(1) if selected else ""
    for name in re.findall(r'<input type="(?:text|date)" name="(\w+)"(?! value)', form):
        values.setdefault(name, "")
    return values


def test_it_saves_an_edit_through_customer_update(client, steward, vip):
    values = edit_form(page(client, steward, vip).content.decode())
    assert values["version"] == str(vip.version) and values["f_mobile"] == "+8613800138000"
    assert "f_id_number" not in values  # secret: the steward sees it masked, so cannot edit it
    values.update(f_mobile="139 0013 9000", f_company="乙公司")
    response = client.post(f"/customers/{vip.pk}/edit/", values, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 302
    vip.refresh_from_db()
    assert (vip.mobile, vip.company, vip.version) == ("+8613900139000", "乙公司", int(values["version"]) + 1)
    latest = Customer.history.filter(id=vip.pk).order_by("-history_id").first()
    assert (latest.change_channel, latest.history_user) == (ChangeChannel.WEB, steward)
    assert latest.tags == ["vip", "gold"]  # fields left as they were are not rewritten


def test_a_stale_edit_says_so_and_shows_the_fresh_values(client, steward, admin_user, vip):
    values = edit_form(page(client, steward, vip).content.decode())
    # Someone else saves first.
    customer_update(
        customer_id=vip.pk, values={"company": "丙公司"}, expected_version=vip.version, acting_user=admin_user
    )
    values["f_job_title"] = "经理"
    response = client.post(f"/customers/{vip.pk}/edit/", values, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 409
    html = response.content.decode()
    assert "Someone else changed this customer" in html
    assert '<span class="value">丙公司</span>' in html  # the fresh value
    assert "What you tried to save" in html and "经理" in html
    assert edit_form(html)["version"] == str(vip.version + 1)  # the form now carries the fresh version
    vip.refresh_from_db()
    assert vip.job_title == "采购" and vip.company == "丙公司"


def test_an_invalid_edit_shows_the_reason_and_saves_nothing(client, steward, vip):
    values = edit_form(page(client, steward, vip).content.decode())
    values["f_mobile"] = "12345"
    response = client.post(f"/customers/{vip.pk}/edit/", values, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 400
    assert "not a valid phone number" in response.content.decode()
    vip.refresh_from_db()
    assert vip.mobile == "+8613800138000"


def test_support_may_not_post_an_edit(client, support, vip):
    client.force_login(support)
    response = client.post(f"/customers/{vip.pk}/edit/", {"version": vip.version, "f_mobile": "13900139000"})
    assert response.status_code == 403
    vip.refresh_from_db()
    assert vip.mobile == "+8613800138000"


def restore_forms(html: str) -> list[dict[str, str]]:
    forms = re.findall(r'<form method="post" action="/customers/\d+/restore/".*?</form>', html, re.S)
    return [dict(re.findall(r'name="(\w+)" value="([^"]*)"', f)) for f in forms]


def test_an_editor_restores_a_former_value_in_one_click(client, steward, vip):
    customer_update(
        customer_id=vip.pk, values={"mobile": "13900139000"}, expected_version=vip.version, acting_user=steward
    )
    html = page(client, steward, vip).content.decode()
    (form,) = [f for f in restore_forms(html) if f["field"] == "mobile"]
    assert "Restore “+8613800138000”" in html
    response = client.post(f"/customers/{vip.pk}/restore/", form, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 302
    vip.refresh_from_db()
    assert vip.mobile == "+8613800138000"
    latest = Customer.history.filter(id=vip.pk).order_by("-history_id").first()
    assert latest.change_ref == f"restore:{form['history_id']}" and latest.change_channel == ChangeChannel.WEB
    # The restore shows in the timeline like every change, with who and through what.
    html = page(client, steward, vip).content.decode()
    assert f"restore:{form['history_id']}" in html


def test_a_restore_checks_the_version(client, steward, vip):
    customer_update(customer_id=vip.pk, values={"company": "乙公司"}, expected_version=vip.version, acting_user=steward)
    form = next(f for f in restore_forms(page(client, steward, vip).content.decode()) if f["field"] == "company")
    customer_update(
        customer_id=vip.pk, values={"company": "丙公司"}, expected_version=vip.version + 1, acting_user=steward
    )
    response = client.post(f"/customers/{vip.pk}/restore/", form, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 409 and "Someone else changed this customer" in response.content.decode()
    vip.refresh_from_db()
    assert vip.company == "丙公司"


def test_a_restore_names_a_history_row_of_this_customer(client, steward, vip):
    other = CustomerFactory()
    row = Customer.history.filter(id=other.pk).first()
    client.force_login(steward)
    response = client.post(
        f"/customers/{vip.pk}/restore/",
        {"history_id": row.history_id, "field": "mobile", "version": vip.version},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert response.status_code == 302
    vip.refresh_from_db()
    assert vip.mobile == "+8613800138000"


def test_tags_and_dates_restore_to_their_former_values(client, steward, vip):
    vip_version = vip.version
    customer_update(
        customer_id=vip.pk,
        values={"tags": "vip", "birth_date": "1990-05-17"},
        expected_version=vip_version,
        acting_user=steward,
    )
    customer_update(
        customer_id=vip.pk, values={"birth_date": "1991-01-01"}, expected_version=vip_version + 1, acting_user=steward
    )
    forms = restore_forms(page(client, steward, vip).content.decode())
    tags = next(f for f in forms if f["field"] == "tags")
    assert client.post(f"/customers/{vip.pk}/restore/", tags).status_code == 302
    birth = next(f for f in forms if f["field"] == "birth_date" and f["history_id"] != tags["history_id"])
    birth["version"] = str(vip_version + 3)
    assert client.post(f"/customers/{vip.pk}/restore/", birth).status_code == 302
    vip.refresh_from_db()
    assert vip.tags == ["vip", "gold"] and vip.birth_date == dt.date(1990, 5, 17)


def test_the_full_history_page_offers_the_same_restore_to_editors_only(client, steward, support, vip):
    customer_update(
        customer_id=vip.pk, values={"mobile": "13900139000"}, expected_version=vip.version, acting_user=steward
    )
    client.force_login(steward)
    html = client.get(f"/customers/{vip.pk}/history/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    (form,) = [f for f in restore_forms(html) if f["field"] == "mobile"]
    assert client.post(f"/customers/{vip.pk}/restore/", form).status_code == 302
    vip.refresh_from_db()
    assert vip.mobile == "+8613800138000"
    client.force_login(support)
    html = client.get(f"/customers/{vip.pk}/history/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert restore_forms(html) == []


def test_a_custom_field_with_allowed_values_is_edited_from_a_list(client, steward, vip):
    from crmhub.models import FieldDefinition

    FieldDefinition.objects.create(name="tier", label_en="Tier", label_zh="等级", choices=["gold", "silver"])
    vip.custom = {"tier": "legacy"}  # set before the list existed: still offered, not lost on save
    vip.save()
    html = page(client, steward, vip).content.decode()
    options = re.search(r'<select name="f_tier"[^>]*>(.*?)</select>', html, re.S).group(1)
    assert re.findall(r'<option value="([^"]*)"', options) == ["", "gold", "silver", "legacy"]
    values = edit_form(html)
    assert values["f_tier"] == "legacy"
    values.update(f_tier="silver")
    response = client.post(f"/customers/{vip.pk}/edit/", values, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 302
    vip.refresh_from_db()
    assert vip.custom == {"tier": "silver"}
