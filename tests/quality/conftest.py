"""A small fixed data set whose quality figures are known exactly (see test_metrics.py)."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone

from crmhub.choices import CustomerStatus
from crmhub.models import SourceRecord
from tests.factories import CustomerFactory, SourceFactory, SourceRecordFactory

NOW = timezone.now()


@pytest.fixture
def quality_world(db):  # noqa: ANN001, ANN201
    from dedup.models import MatchCandidate
    from imports.choices import RunStatus
    from imports.models import ImportRun

    crm = SourceFactory(code="crm", name="CRM")
    shop = SourceFactory(code="shop", name="Shop")
    c1 = CustomerFactory(mobile="+8613800000001", email="a@example.com")
    c2 = CustomerFactory(mobile="+8613800000002", email="")
    c3 = CustomerFactory(mobile="+8613800000001", email="")
    CustomerFactory(mobile="+8613800000001", email="", status=CustomerStatus.MERGED, merged_into=c1)

    def record(source, key, customer, normalized, flags=None, seen_hours=0):  # noqa: ANN001, ANN202
        return SourceRecordFactory(
            source=source,
            source_key=key,
            customer=customer,
            raw={"k": key},
            normalized=normalized,
            flags=flags or {},
            last_seen_at=NOW - timedelta(hours=seen_hours),
        )

    record(crm, "r1", c1, {"full_name": "张三", "mobile": "+8613800000001"}, seen_hours=10)
    record(
        crm, "r2", c2, {"full_name": "李四", "mobile": "12345"}, {"mobile": "not a valid phone number"}, seen_hours=12
    )
    record(crm, "r3", c3, {"full_name": "王五"}, seen_hours=11)
    record(crm, "r4", c1, {"mobile": "+8613800000001", "email": "a@example.com"}, seen_hours=10)
    record(shop, "r5", c1, {"full_name": "张三丰", "mobile": "+8613800000001"}, seen_hours=30)
    record(shop, "r6", c2, {"full_name": "李四", "mobile": "+8613800000002"}, seen_hours=30)
    run = ImportRun.objects.create(source=shop, status=RunStatus.COMPLETED)
    ImportRun.objects.filter(pk=run.pk).update(finished_at=NOW - timedelta(hours=2))
    MatchCandidate.objects.create(left=c2, right=c3, score=0.8)
    assert SourceRecord.objects.count() == 6
    return SimpleNamespace(crm=crm, shop=shop, c1=c1, c2=c2, c3=c3, now=NOW)
