"""factory_boy factories of the core domain."""

from __future__ import annotations

import factory
from django.utils import timezone

from crmhub.choices import InteractionKind, SourceKind
from crmhub.models import Customer, Interaction, Source, SourceRecord


class SourceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Source
        django_get_or_create = ["code"]

    code = factory.Sequence(lambda n: f"src{n}")
    name = factory.LazyAttribute(lambda o: f"Source {o.code}")
    kind = SourceKind.FILE


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    full_name = "张伟"
    family_name = "张"
    given_name = "伟"
    name_pinyin = "zhangwei"
    gender = "M"
    mobile = factory.Sequence(lambda n: f"+86138{n:08d}")
    email = factory.Sequence(lambda n: f"user{n}@example.com")


class SourceRecordFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SourceRecord

    source = factory.SubFactory(SourceFactory)
    source_key = factory.Sequence(lambda n: f"K{n:06d}")
    customer = factory.SubFactory(CustomerFactory)
    raw = factory.LazyAttribute(lambda o: {"姓名": o.customer.full_name, "手机": o.customer.mobile})
    normalized = factory.LazyAttribute(lambda o: {"full_name": o.customer.full_name, "mobile": o.customer.mobile})


class InteractionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Interaction

    customer = factory.SubFactory(CustomerFactory)
    source = factory.SubFactory(SourceFactory)
    kind = InteractionKind.ORDER
    external_id = factory.Sequence(lambda n: f"O{n:07d}")
    occurred_at = factory.LazyFunction(timezone.now)
    title = "订单"
