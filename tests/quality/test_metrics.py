from __future__ import annotations

from datetime import date

import pytest

from crmhub.models import QualitySnapshot
from crmhub.quality import quality_figures, quality_snapshot_take
from tests.factories import SourceRecordFactory

pytestmark = pytest.mark.django_db


def _by_key(figures):  # noqa: ANN001, ANN202
    return {(f.source_id, f.field, f.metric): f for f in figures}


def test_it_computes_every_metric_of_the_fixed_data_set_exactly(quality_world):
    w = quality_world
    got = _by_key(quality_figures(now=w.now))

    def ratio(source, field, metric):  # noqa: ANN001, ANN202
        f = got[(source.pk if source else None, field, metric)]
        return f.numerator, f.denominator

    # Per source: completeness of the fields the source carries, validity by the cleaning flags.
    assert ratio(w.crm, "", "records") == (4, None)
    assert ratio(w.crm, "full_name", "completeness") == (3, 4)
    assert ratio(w.crm, "mobile", "completeness") == (3, 4)
    assert ratio(w.crm, "mobile", "validity") == (2, 3)
    assert ratio(w.crm, "email", "completeness") == (1, 4)
    assert ratio(w.crm, "email", "validity") == (1, 1)
    assert ratio(w.shop, "full_name", "completeness") == (2, 2)
    assert ratio(w.shop, "mobile", "validity") == (2, 2)
    assert (w.shop.pk, "email", "completeness") not in got  # the shop never carries e-mail
    assert ratio(None, "mobile", "validity") == (4, 5)
    assert got[(w.crm.pk, "mobile", "validity")].value == pytest.approx(2 / 3)
    # Golden records: the merged tombstone does not count.
    assert ratio(None, "", "records") == (3, None)
    assert ratio(None, "mobile", "completeness") == (3, 3)
    assert ratio(None, "email", "completeness") == (1, 3)
    assert ratio(None, "mobile", "uniqueness") == (2, 3)
    assert ratio(None, "mobile", "duplicate_rate") == (2, 3)
    assert ratio(None, "email", "duplicate_rate") == (0, 1)
    # ... and per source, among the source's own records (r1 and r4 share a mobile).
    assert ratio(w.crm, "mobile", "uniqueness") == (2, 3)
    assert ratio(w.crm, "mobile", "duplicate_rate") == (2, 3)
    assert ratio(w.shop, "mobile", "duplicate_rate") == (0, 2)
    assert ratio(w.crm, "email", "duplicate_rate") == (0, 1)
    assert (w.crm.pk, "id_number", "duplicate_rate") not in got
    # Conflicts between the source records of one customer.
    assert ratio(None, "full_name", "conflict_rate") == (1, 2)
    assert ratio(None, "mobile", "conflict_rate") == (1, 2)
    assert (None, "email", "conflict_rate") not in got
    assert (None, "id_number", "conflict_rate") not in got  # sealed: not comparable
    # Freshness: the later of the last successful run and the last record seen.
    assert got[(w.crm.pk, "", "freshness_hours")].value == pytest.approx(10, abs=0.01)
    assert got[(w.shop.pk, "", "freshness_hours")].value == pytest.approx(2, abs=0.01)
    assert ratio(None, "", "review_backlog") == (1, None)


def test_it_replaces_the_days_snapshot_when_run_again(quality_world):
    w = quality_world
    day = date(2026, 1, 5)
    first = quality_snapshot_take(day=day, now=w.now)
    assert QualitySnapshot.objects.filter(date=day).count() == first
    quality_snapshot_take(day=date(2026, 1, 4), now=w.now)
    SourceRecordFactory(source=w.crm, source_key="r7", customer=w.c3, normalized={"full_name": "赵六"}, flags={})
    second = quality_snapshot_take(day=day, now=w.now)
    assert QualitySnapshot.objects.filter(date=day).count() == second
    rows = QualitySnapshot.objects.filter(date=day, source=w.crm, field="full_name", metric="completeness")
    assert [(r.numerator, r.denominator) for r in rows] == [(4, 5)]
    # The other day is untouched.
    earlier = QualitySnapshot.objects.get(date=date(2026, 1, 4), source=w.crm, field="full_name", metric="completeness")
    assert (earlier.numerator, earlier.denominator) == (3, 4)


def test_it_computes_nothing_wrong_on_an_empty_database(db):
    figures = _by_key(quality_figures())
    assert figures[(None, "", "records")].numerator == 0
    assert figures[(None, "mobile", "completeness")].value is None
    assert figures[(None, "", "review_backlog")].numerator == 0
