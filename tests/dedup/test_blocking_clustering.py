"""Blocking keys, the guard against oversized blocks, and the transitive-closure guard."""

from __future__ import annotations

import numpy as np
import pytest

from dedup import blocking
from dedup.clustering import cluster
from dedup.features import features_from_rows


def _pairs(rows, keys, **kw):  # noqa: ANN001, ANN003, ANN202
    f = features_from_rows(rows)
    stats = blocking.BlockingStats()
    pairs = blocking.block_pairs(f, keys, stats=stats, **kw)
    ids = f["id"].to_numpy()
    return {(int(ids[a]), int(ids[b])) for a, b in pairs}, stats


def test_it_blocks_on_the_last_8_mobile_digits():
    rows = [
        {"id": 1, "mobile": "+8613800138000"},
        {"id": 2, "mobile": "13800138000"},
        {"id": 3, "mobile": "13900000000"},
    ]
    pairs, _ = _pairs(rows, ["mobile8"])
    assert pairs == {(1, 2)}


def test_it_blocks_on_family_pinyin_and_birth_year_across_scripts():
    rows = [
        {"id": 1, "full_name": "张伟", "birth_date": "1985-03-04"},
        {"id": 2, "full_name": "章玮", "birth_date": "1985-12-01"},
        {"id": 3, "full_name": "张伟", "birth_date": "1986-03-04"},
    ]
    pairs, _ = _pairs(rows, ["family_birth_year"])
    assert pairs == {(1, 2)}


def test_it_blocks_on_email_local_part_but_not_generic_ones():
    rows = [
        {"id": 1, "email": "zhangwei85@qq.com"},
        {"id": 2, "email": "zhangwei85@163.com"},
        {"id": 3, "email": "info@a.com"},
        {"id": 4, "email": "info@b.com"},
    ]
    pairs, _ = _pairs(rows, ["email_local"])
    assert pairs == {(1, 2)}


def test_it_never_blocks_on_surname_alone_and_sub_blocks_oversized_blocks():
    # 300 张 born in 1985 whose given names all start with "w": one family+year+initial block
    # above the cap. Sub-blocking by the full given name splits it into wei/wen/wu.
    rows = [{"id": i, "full_name": "张" + "伟文武"[i % 3], "birth_date": "1985-01-01"} for i in range(300)]
    pairs, stats = _pairs(rows, ["family_birth_year"], max_block=150)
    assert stats.sub_blocked >= 1
    assert all(rows[a]["full_name"] == rows[b]["full_name"] for a, b in pairs)
    assert len(pairs) == 3 * (100 * 99 // 2)
    # Different initials never share a block at all.
    pairs, _ = _pairs(
        [
            {"id": 1, "full_name": "张伟", "birth_date": "1985-01-01"},
            {"id": 2, "full_name": "张芳", "birth_date": "1985-01-01"},
        ],
        ["family_birth_year"],
    )
    assert pairs == set()


def test_it_skips_blocks_that_stay_too_big_and_counts_them():
    rows = [{"id": i, "mobile": "13800138000"} for i in range(50)]
    pairs, stats = _pairs(rows, ["mobile8"], max_block=10)
    assert pairs == set()
    assert stats.skipped_records == 50


def test_each_pair_appears_once_whatever_the_number_of_shared_keys():
    rows = [
        {"id": 1, "mobile": "13800138000", "email": "abc@x.cn"},
        {"id": 2, "mobile": "13800138000", "email": "abc@y.cn"},
    ]
    pairs, stats = _pairs(rows, ["mobile8", "email_local"])
    assert pairs == {(1, 2)}
    assert stats.pairs == 1


def test_unknown_keys_are_refused():
    with pytest.raises(ValueError, match="unknown blocking key"):
        blocking.block_pairs(features_from_rows([{"id": 1}]), ["surname"])


def test_it_clusters_connected_links():
    result = cluster([(1, 2), (2, 3), (5, 4)], [0.99, 0.99, 0.99])
    assert result.clusters == [[1, 2, 3], [4, 5]]
    assert result.refused == []


def test_it_splits_a_chain_whose_ends_clearly_differ():
    # A~B (0.999), B~C (0.996), but A and C are clearly different people: C stays apart.
    result = cluster([(1, 2), (2, 3)], [0.999, 0.996], differ={(1, 3)})
    assert result.clusters == [[1, 2]]
    assert result.refused == [1]
    assert result.split_components == 1


def test_it_asks_the_differ_function_about_all_member_pairs():
    asked = []

    def differ(pairs):  # noqa: ANN001, ANN202
        asked.extend(pairs)
        return {(1, 3)}

    result = cluster([(1, 2), (2, 3)], [0.996, 0.999], differ=differ)
    assert sorted(asked) == [(1, 2), (1, 3), (2, 3)]
    assert result.clusters == [[2, 3]]


def test_it_caps_the_cluster_size():
    links = [(i, i + 1) for i in range(1, 10)]
    result = cluster(links, [0.999] * len(links), max_size=4)
    assert max(len(c) for c in result.clusters) <= 4
    assert result.refused
    assert result.largest_component == 10


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError):
        cluster([(1, 2)], [])


def test_pairs_in_groups_is_exhaustive():
    codes = np.array([0, 1, 0, 1, 0, 2])
    li, ri = blocking._pairs_in_groups(codes, np.arange(6))
    assert sorted(zip(np.minimum(li, ri).tolist(), np.maximum(li, ri).tolist(), strict=True)) == [
        (0, 2),
        (0, 4),
        (1, 3),
        (2, 4),
    ]


def test_coded_keys_equal_the_string_keys():
    # block_pairs works on integer codes; they must group records exactly as the readable keys do.
    rows = [
        {"id": 1, "full_name": "张伟", "birth_date": "1985-03-04", "mobile": "13800138000", "city": "北京"},
        {"id": 2, "full_name": "章玮", "birth_date": "1985-03-04", "mobile": "+8613800138000", "postcode": "100000"},
        {"id": 3, "full_name": "張偉", "birth_date": "1986-03-04", "email": "zw@qq.com", "city": "北京"},
        {"id": 4, "full_name": "John Smith", "email": "zw@163.com", "postcode": "100000", "gender": "M"},
        {"id": 5, "full_name": "Bill Smith", "email": "info@x.cn", "id_number": "11010519491231002X"},
        {"id": 6, "full_name": "伟张", "mobile": "138001", "id_number": "11010519491231002x"},
        {"id": 7},
    ]
    f = features_from_rows(rows)
    codes = blocking._Codes(f)
    for name, bkey in blocking.BLOCKING_KEYS.items():
        readable = bkey.func(f).to_numpy(dtype=object)
        coded = blocking._coded_key(codes, name)
        assert ((readable == "") == (coded < 0)).all(), name
        for i in range(len(f)):
            for j in range(len(f)):
                if readable[i] and readable[j]:
                    assert (readable[i] == readable[j]) == (coded[i] == coded[j]), name
