"""Fixtures of the dedup tests: a small fixed data set with known duplicates."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from crmhub.models import Customer, Interaction, Source, SourceRecord

# (key, full name, birth date, mobile, email, gender, city, person)
PEOPLE = [
    ("A1", "张伟", "1985-03-04", "+8613800000001", "zhangwei85@qq.com", "M", "上海", "p1"),
    ("A2", "章伟", "1985-03-04", "+8613800000001", "", "M", "上海", "p1"),  # sound-alike name
    ("A3", "張偉", "1985-03-04", "+8613800000001", "zhangwei85@qq.com", "M", "上海", "p1"),  # traditional
    ("B1", "张芳", "1985-03-04", "+8613800000001", "", "F", "上海", "p2"),  # twin sister, family phone
    ("C1", "Bill Smith", "1970-01-02", "+8613900000002", "bill.smith@example.com", "M", "北京", "p3"),
    ("C2", "William Smith", "1970-01-02", "+8613900000002", "bill.smith@example.com", "M", "北京", "p3"),
    ("D1", "王芳", "1990-07-08", "+8613700000003", "wf90@163.com", "F", "广州", "p4"),
    ("D2", "王芳", "1990-08-07", "+8613700000030", "wf90@163.com", "F", "广州", "p4"),  # swapped d/m, typo
    ("E1", "王芳", "1992-11-30", "+8613600000004", "", "F", "广州", "p5"),  # namesake
    ("F1", "李娜", "1988-05-05", "+8613500000005", "lina@x.cn", "F", "杭州", "p6"),
]


def make_source(code: str = "crm") -> Source:
    return Source.objects.get_or_create(code=code, defaults={"name": code})[0]


def add_person(source: Source, key: str, **values) -> Customer:  # noqa: ANN003
    """Create a golden record and its source record, as the import does for a new record."""
    from dedup.names import pinyin

    if isinstance(values.get("birth_date"), str):
        values["birth_date"] = dt.date.fromisoformat(values["birth_date"])
    values.setdefault("name_pinyin", pinyin(values.get("full_name", "")))
    customer = Customer.objects.create(**values)
    normalized = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in values.items() if k != "name_pinyin"}
    SourceRecord.objects.create(source=source, source_key=key, customer=customer, normalized=normalized)
    return customer


@pytest.fixture
def people(db) -> dict[str, Customer]:  # noqa: ANN001
    source = make_source()
    out = {}
    for key, name, birth, mobile, email, gender, city, _person in PEOPLE:
        out[key] = add_person(
            source, key, full_name=name, birth_date=birth, mobile=mobile, email=email, gender=gender, city=city
        )
    Interaction.objects.create(
        customer=out["A2"], source=source, kind="order", external_id="O-1", occurred_at=timezone.now(), title="order"
    )
    return out
