"""The batch run's faster paths give exactly what the plain ones give: features per distinct
value with per-batch name memos, pairs compared from memory in forked processes, the guard's
features read for the records it compares only, explanations per distinct entry, the links
inside clusters found with arrays, and the refresh after a large run."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from dedup import engine, names, services
from dedup.choices import CandidateStatus
from dedup.features import _small_features, build_features
from dedup.models import MatchCandidate

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐許韓馮欧阳司马上官诸葛"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红重庆长乐偉麗強軍"
WESTERN = ["Bill", "William", "Smith", "Kate", "Katherine", "O'Brien", "José", "van der Berg", "Liz", "Ann-Marie"]


def _random_names(rng: random.Random, n: int) -> list[str]:
    out = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.7:
            family = rng.choice(SURNAMES) if rng.random() < 0.8 else rng.choice(["欧阳", "司马", "上官", "诸葛"])
            given = "".join(rng.choice(GIVEN) for _ in range(rng.randint(1, 2)))
            sep = rng.choice(["", "", "", " ", "·"])
            out.append(family + sep + given)
        elif kind < 0.95:
            out.append(" ".join(rng.choice(WESTERN) for _ in range(rng.randint(1, 3))) + rng.choice(["", " ", ","]))
        else:
            out.append(rng.choice(["", " ", "A", "张", "Ｚｈａｎｇ　Ｗｅｉ"]))
    return out


def test_a_batchs_name_memos_give_the_shared_functions_answers():
    rng = random.Random(3)
    batch = names.Names.batch()
    for full in _random_names(rng, 3000):
        family = rng.choice(["", "", "", full[:1], "欧阳", "Smith"])
        given = rng.choice(["", "", "", full[1:], "娜娜", "Bill"])
        assert batch.fold(full) == names.fold(full)
        assert batch.name_key(full) == names.name_key(full)
        assert batch.family_key(full, family) == names.family_key(full, family)
        assert batch.given_key(full, given, family) == names.given_key(full, given, family)
        assert batch.swapped_name(full, family, given) == names.swapped_name(full, family, given)


def test_features_per_distinct_value_equal_the_per_row_features():
    rng = random.Random(5)
    fulls = _random_names(rng, 400)
    rows = []
    for k, full in enumerate(fulls):
        row = {"id": k + 1}
        if rng.random() < 0.9:
            row["full_name"] = rng.choice([full, f" {full} ", full.upper()])
        else:
            row["family_name"], row["given_name"] = rng.choice([("欧阳", "娜娜"), ("Smith", "Bill"), ("", "伟")])
        mobiles = ["+8613800138000", "13800138000", "+86 138-0013-8000", "８６１３８００１３８０００", "+1 (555) 010"]
        row["mobile"] = rng.choice([*mobiles, "", None])
        row["email"] = rng.choice(["ZW@QQ.com", "nolocal", "", None, " a.b@x.cn "])
        row["birth_date"] = rng.choice(["1985-03-04", "1985-3-4", "", None, "1990-02-30", "2001-12-31T00:00"])
        row["gender"] = rng.choice(["m", "F", "U", "", None, " f "])
        row["postcode"] = rng.choice(["200 030", "200030", "", None, "\t1000 01"])
        row["city"] = rng.choice(["上海", "上海 ", "臺北", "", None, "Beijing"])
        row["address"] = rng.choice(["上海市 徐汇区", "臺北市·信義區", "", None, "1 Main St."])
        row["id_number_hash"] = rng.choice(["ab", "", None])
        row["member_no"] = rng.choice([" M1 ", "", None])
        row["wechat_unionid"] = rng.choice(["u1", "", None])
        row["id_valid"] = rng.choice([True, False, None])
        rows.append(row)
    columns = sorted({k for r in rows for k in r})
    small = _small_features(rows)
    big = build_features(pd.DataFrame.from_records([{c: r.get(c) for c in columns} for r in rows]))
    pd.testing.assert_frame_equal(small.reset_index(drop=True), big.reset_index(drop=True), check_dtype=False)


def _config():  # noqa: ANN202
    return services.rule_get().config()


@pytest.mark.django_db
def test_explaining_many_rows_at_once_equals_explaining_them_one_by_one():
    config = _config()
    rng = np.random.default_rng(9)
    n, k = 2000, len(config.comparisons)
    levels = np.stack([rng.integers(0, len(c.levels) + 1, size=n) for c in config.comparisons], axis=1).astype(np.int8)
    # Weights that round at the edge (x.xx5), repeat, and both zeros (which print differently).
    pool = np.array([0.0, -0.0, 1.005, 2.675, -3.125, 7.0, 0.125, -0.0049, 0.0049, 12.3456])
    contributions = pool[rng.integers(0, len(pool), size=(n, k))] + np.where(
        rng.random((n, k)) < 0.3, rng.normal(0, 3, (n, k)), 0.0
    )
    for as_json in (True, False):
        one = engine.Explainer(config, as_json=as_json)
        expected = [one(levels[i], contributions[i]) for i in range(n)]
        assert engine.Explainer(config, as_json=as_json).many(levels, contributions) == expected
    # -0.0 first: every row of that level shows it, as explaining row by row does.
    zeros = np.array([[-0.0] * k, [0.0] * k])
    same = np.ones((2, k), dtype=np.int8)
    assert (
        engine.Explainer(config, as_json=True).many(same, zeros)
        == [engine.Explainer(config, as_json=True)(same[0], zeros[0])] * 2
    )


def _scored_by_parts(run):  # noqa: ANN001, ANN202
    assert services.dedup_run_prepare(run=run, part_pairs=7) > 2
    for part in run.parts.order_by("number"):
        services.dedup_run_score_part(part=part)
    return services.dedup_run_cluster(run=run)


def _crowd(people: int = 25) -> None:
    """People with one to three records each (variants, missing values) and namesakes: enough
    pairs for several parts, links and clusters of more than two."""
    from tests.dedup.conftest import add_person, make_source

    source = make_source("crowd")
    rng = random.Random(11)
    for p in range(people):
        name = rng.choice("王李张刘陈") + rng.choice(GIVEN[:20]) + rng.choice(["", rng.choice(GIVEN[:20])])
        mobile = f"+8613{rng.randint(0, 10**9 - 1):09d}"
        birth = f"19{rng.randint(60, 99)}-1{rng.randint(0, 2)}-0{rng.randint(1, 9)}"
        email = f"p{p}@qq.com"
        for r in range(rng.choice([1, 2, 2, 3, 3])):
            values = {"full_name": name, "mobile": mobile, "birth_date": birth, "city": "上海", "gender": "F"}
            if p % 3:
                values["id_number"] = f"11010119900307{p:04d}"  # deterministic links
            if r and rng.random() < 0.5:
                values["email"] = email
            if r == 2:
                values["birth_date"] = birth[:5] + birth[8:] + birth[4:7]  # day and month swapped
            add_person(source, f"P{p}R{r}", **values)


@pytest.mark.django_db
@pytest.mark.parametrize("processes", [1, 2])
def test_scoring_from_memory_gives_what_the_scored_parts_give(people, monkeypatch, processes):
    """The inline run compares its pairs from memory (in forked processes with ``processes``
    > 1) and EM reads its sample from those levels: same parameters, pairs, scores, levels,
    clusters and review queue as the parts the workers score."""
    _crowd()
    monkeypatch.setattr(services, "PART_PAIRS", 7)  # several parts and slices
    parts_run = _claimed()
    by_parts = _scored_by_parts(parts_run)
    run = _claimed()
    scored = services.dedup_run_prepare_and_score(run=run, processes=processes)
    from_memory = services.dedup_run_cluster(run=run, scored=scored)
    parts_run.refresh_from_db()
    assert run.parameters == parts_run.parameters and run.pairs == parts_run.pairs
    for key in engine.PairResults.__dataclass_fields__:
        assert np.array_equal(getattr(from_memory["res"], key), getattr(by_parts["res"], key)), key
    assert from_memory["clusters"] == by_parts["clusters"] and from_memory["review"] == by_parts["review"]
    assert len(by_parts["clusters"]) >= 3
    assert not run.parts.exists()  # nothing pickled


def _claimed():  # noqa: ANN202
    run = services.dedup_run_create()
    assert services.dedup_run_claim(run.pk)
    run.refresh_from_db()
    return run


@pytest.mark.django_db
def test_the_guard_reads_the_features_of_the_records_it_compares_only():
    """Components of two are accepted as they are: the guard's features are read for the
    members of larger components, and clustering gives what it gives with everybody's."""
    _crowd(60)
    config = _config()
    features = build_features(services.customer_frame()).reset_index(drop=True)
    from dedup import blocking

    pairs = blocking.block_pairs(features, config.blocking_keys, max_block=config.max_block)
    params = engine.learn_parameters(config, features, pairs)
    res = engine.score_pair_positions(config, params, features, pairs)
    guarded = engine.guarded_ids(res)
    linked = set(res.left[res.action == 2].tolist()) | set(res.right[res.action == 2].tolist())
    assert guarded and guarded < linked
    few = features[features["id"].isin(guarded)].reset_index(drop=True)
    assert engine.cluster_links(config, params, few, res) == engine.cluster_links(config, params, features, res)


def test_links_inside_clusters_come_cluster_by_cluster_then_by_pair():
    res = engine.PairResults(
        left=np.array([5, 1, 2, 1, 7, 3, 1]),
        right=np.array([6, 3, 3, 2, 8, 9, 9]),
        score=np.ones(7),
        action=np.array([2, 2, 2, 2, 2, 2, 1], dtype=np.int8),
        reason=np.array([""] * 7, dtype=object),
        levels=np.zeros((7, 1), dtype=np.int8),
        contributions=np.zeros((7, 1)),
    )
    clusters = [[5, 6], [1, 2, 3], [7, 8]]  # (7, 8) not merged: left out below
    member_ids = np.array([5, 6, 1, 2, 3])
    member_cluster = np.array([0, 0, 1, 1, 1])
    # The reference: every (a, b) of each merged cluster's members, in that order.
    pair_index = {(a, b): i for i, (a, b) in enumerate(zip(res.left.tolist(), res.right.tolist(), strict=True))}
    expected = [
        pair_index[(a, b)]
        for members in clusters[:2]
        for a in members
        for b in members
        if (a, b) in pair_index and res.action[pair_index[(a, b)]] == 2
    ]
    assert services._pairs_inside(res, member_ids, member_cluster).tolist() == expected == [0, 3, 1, 2]


@pytest.mark.django_db
def test_a_refresh_after_a_run_of_many_merges_rebuilds_every_cluster(people, monkeypatch):
    """Past REBUILD_ABOVE merges the run's clusters are rebuilt straight away (each merge has
    its own survivor, so the refresh would rebuild anyway) and come out as probing gives."""
    from dedup import clusters

    rebuilt = []
    monkeypatch.setattr(clusters, "REBUILD_ABOVE", 1)
    monkeypatch.setattr(clusters, "clusters_rebuild", _spy(clusters.clusters_rebuild, rebuilt))
    run = services.dedup_run_execute_inline(run=services.dedup_run_create())
    assert run.auto_merged == 3 and rebuilt
    pending = MatchCandidate.objects.get(status=CandidateStatus.PENDING)
    assert (pending.cluster, pending.cluster_score) == (pending.pk, pending.score)


def _spy(func, calls: list):  # noqa: ANN001, ANN202
    def wrapped(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(args)
        return func(*args, **kwargs)

    return wrapped
