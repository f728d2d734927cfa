"""Fellegi–Sunter weights, term-frequency (rarity) weighting, identity-key logic, EM."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dedup import scoring
from dedup.comparators import COMPARISONS
from dedup.engine import RuleConfig, score_pair_positions
from dedup.features import features_from_rows

NAME, BIRTH, MOBILE, ID, UNION = (
    COMPARISONS[n] for n in ("name", "birth_date", "mobile", "id_number", "wechat_unionid")
)


def test_it_weighs_each_level_by_log2_m_over_u():
    params = scoring.Parameters(m={"mobile": [0.8, 0.1, 0.1]}, u={"mobile": [0.01, 0.01, 0.98]}, prior=0.5)
    weights = params.weights("mobile")
    assert weights[0] == 0  # missing is neutral
    assert np.isclose(weights[1], np.log2(80))
    assert np.isclose(weights[3], np.log2(0.1 / 0.98))


def test_it_treats_missing_values_as_neutral():
    params = scoring.Parameters.defaults([NAME, BIRTH])
    levels = np.array([[1, 0], [1, 1]], dtype=np.int8)
    scored = scoring.score_pairs([NAME, BIRTH], params, levels)
    assert scored.contributions[0, 1] == 0
    assert scored.score[1] > scored.score[0]


def test_it_counts_agreement_on_a_rare_value_more_than_on_a_common_one():
    rows = [{"id": i, "full_name": "张伟"} for i in range(300)] + [
        {"id": 1000 + i, "full_name": f"名{i}"} for i in range(2000)
    ]
    rows += [{"id": 5000, "full_name": "欧阳娜娜"}, {"id": 5001, "full_name": "欧阳娜娜"}]
    features = features_from_rows(rows)
    tf, sizes = scoring.term_frequencies([NAME], features)
    params = scoring.Parameters.defaults([NAME])
    params.tf, params.tf_floor = tf, sizes
    levels = np.array([[1], [1]], dtype=np.int8)
    left = features.set_index("id").loc[[0, 5000]].reset_index()
    scored = scoring.score_pairs([NAME], params, levels, left=left)
    common, rare = scored.contributions[:, 0]
    assert rare > common + 4  # 张伟 (300 people) weighs far less than 欧阳娜娜 (2)
    assert common > 0


def test_it_shrinks_term_frequencies_on_tiny_data():
    # Three records sharing a value out of six must not look "common" enough to erase the evidence.
    assert scoring.tf_u(np.array([3.0]), 6.0, 1e-5)[0] < 0.01


def test_it_links_on_an_identity_key_unless_another_contradicts_it():
    comps = [ID, UNION, NAME]
    levels = np.array(
        [
            [1, 0, 6],  # same ID, names differ: deterministic
            [1, 2, 1],  # same ID, different unionid: contradiction
            [3, 1, 1],  # different valid ID, same unionid: contradiction
            [0, 0, 1],  # no identity keys
        ],
        dtype=np.int8,
    )
    assert scoring.identity_verdicts(comps, levels).tolist() == [1, -1, -1, 0]
    scored = scoring.score_pairs(comps, scoring.Parameters.defaults(comps), levels)
    decision = scoring.decide(comps, levels, scored, auto_threshold=0.99, review_threshold=0.5)
    # Deterministic but a name differs (a reliable field): review, not automatic.
    assert decision.action.tolist()[:3] == [1, 1, 1]
    assert decision.reason.tolist()[1:3] == ["contradiction", "contradiction"]


def test_it_never_links_two_different_valid_id_numbers_automatically():
    cfg = RuleConfig.from_dict({"learn": False})
    row = {"full_name": "张伟", "birth_date": "1985-03-04", "mobile": "+8613800000001", "email": "a@b.cn"}
    features = features_from_rows(
        [{"id": 1, **row, "id_number": "11010519491231002X"}, {"id": 2, **row, "id_number": "440524188001010014"}]
    )
    params = scoring.Parameters.defaults(cfg.comparisons)
    res = score_pair_positions(cfg, params, features, np.array([[0, 1]]), keep_all=True)
    assert res.action[0] != 2
    assert res.contributions[0, [c.name for c in cfg.comparisons].index("id_number")] < -4


def test_em_learns_m_from_separable_pairs():
    rng = np.random.default_rng(1)
    matches = np.column_stack([rng.choice([1, 2], 400, p=[0.9, 0.1]), rng.choice([1, 3], 400, p=[0.95, 0.05])])
    non = np.column_stack([rng.choice([1, 6], 1600, p=[0.01, 0.99]), rng.choice([1, 3], 1600, p=[0.01, 0.99])])
    levels = np.vstack([matches, non]).astype(np.int8)
    u = {"name": list(NAME.default_u), "mobile": list(MOBILE.default_u)}
    m, prior, iterations = scoring.em_m([NAME, MOBILE], levels, u)
    assert 0.15 < prior < 0.25
    assert m["name"][0] > 0.8
    assert m["mobile"][0] > 0.85
    assert iterations >= 2


def test_u_comes_from_random_pairs():
    rows = [{"id": i, "gender": "M" if i % 2 else "F"} for i in range(400)]
    u, sampled = scoring.estimate_u([COMPARISONS["gender"]], features_from_rows(rows), samples=20000)
    assert sampled > 19000
    assert abs(u["gender"][0] - 0.5) < 0.05


def test_parameters_serialise():
    data = scoring.Parameters.defaults([NAME]).to_json()
    assert set(data) >= {"m", "u", "prior", "weights"}
    assert isinstance(pd.Series(data["weights"]["name"]).sum(), float)
