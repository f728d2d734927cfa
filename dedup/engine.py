"""The matching pipeline over a features frame, without the database: blocking, comparison
levels, learning m/u, scoring, decisions, explanations and guarded clustering. The
services feed it rows and persist what it returns; the Celery tasks split its middle step
(scoring) into parts any worker can take.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dedup import blocking, clustering, scoring
from dedup.comparators import COMPARISONS, Comparison, comparison_levels

DEFAULT_CONFIG: dict = {
    "blocking_keys": list(blocking.DEFAULT_KEYS),
    "comparisons": {
        "name": {"high": 0.92, "low": 0.80},
        "birth_date": {},
        "mobile": {},
        "id_number": {},
        "email": {},
        "gender": {},
        "location": {"high": 0.90},
        "wechat_unionid": {},
        "member_no": {},
    },
    "auto_threshold": 0.9999,
    "review_threshold": 0.98,
    "max_block": 10,
    "max_cluster": 20,
    "learn": True,
    "random_pairs": 200_000,
    "min_pairs_for_em": 200,
}


class RuleConfigError(ValueError):
    pass


@dataclass
class RuleConfig:
    blocking_keys: list[str]
    comparisons: list[Comparison]
    comparison_params: dict[str, dict]
    auto_threshold: float
    review_threshold: float
    max_block: int = 10
    max_cluster: int = 20
    learn: bool = True
    random_pairs: int = 200_000
    min_pairs_for_em: int = 200
    m: dict[str, list[float]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> RuleConfig:
        merged = {**DEFAULT_CONFIG, **(data or {})}
        unknown = [k for k in merged["blocking_keys"] if k not in blocking.BLOCKING_KEYS]
        if unknown:
            raise RuleConfigError(f"unknown blocking keys: {', '.join(unknown)}")
        comps = merged["comparisons"]
        unknown = [k for k in comps if k not in COMPARISONS]
        if unknown:
            raise RuleConfigError(f"unknown comparisons: {', '.join(unknown)}")
        auto, review = float(merged["auto_threshold"]), float(merged["review_threshold"])
        if not 0 < review <= auto <= 1:
            raise RuleConfigError("thresholds must satisfy 0 < review_threshold <= auto_threshold <= 1")
        return cls(
            blocking_keys=list(merged["blocking_keys"]),
            comparisons=[COMPARISONS[name] for name in comps],
            comparison_params={name: dict(p or {}) for name, p in comps.items()},
            auto_threshold=auto,
            review_threshold=review,
            max_block=int(merged["max_block"]),
            max_cluster=int(merged["max_cluster"]),
            learn=bool(merged["learn"]),
            random_pairs=int(merged["random_pairs"]),
            min_pairs_for_em=int(merged["min_pairs_for_em"]),
            m=dict(merged.get("m") or {}),
        )


def levels_of(config: RuleConfig, features: pd.DataFrame, pairs: np.ndarray) -> np.ndarray:
    return comparison_levels(
        config.comparisons, features.iloc[pairs[:, 0]], features.iloc[pairs[:, 1]], config.comparison_params
    )


def learn_parameters(
    config: RuleConfig,
    features: pd.DataFrame,
    pairs: np.ndarray,
    *,
    em_sample: int = 300_000,
    seed: int = 11,
    levels: np.ndarray | None = None,
) -> scoring.Parameters:
    """u from random pairs and TF from the whole frame; m by EM on (a sample of) the pairs.
    ``levels``: the pairs' level matrix when already computed (the sample is then read from
    it: the same rows, so the same estimates)."""
    u, sampled = scoring.estimate_u(
        config.comparisons, features, samples=config.random_pairs, params=config.comparison_params
    )
    tf, floor = scoring.term_frequencies(config.comparisons, features)
    m = {c.name: list(config.m.get(c.name) or c.default_m) for c in config.comparisons}
    prior, iterations, anchors = 0.05, 0, 0
    if config.learn and len(pairs) >= config.min_pairs_for_em:
        rows = slice(None)
        if len(pairs) > em_sample:
            rng = np.random.default_rng(seed)
            rows = rng.choice(len(pairs), em_sample, replace=False)
        sample_levels = levels_of(config, features, pairs[rows]) if levels is None else levels[rows]
        m, prior, iterations, anchors = scoring.learn_m(config.comparisons, sample_levels, u)
    return scoring.Parameters(
        m=m,
        u=u,
        prior=prior,
        tf=tf,
        tf_floor=floor,
        em_iterations=iterations,
        random_pairs=sampled,
        anchor_pairs=anchors,
    )


@dataclass
class PairResults:
    """Scored pairs (record *ids*, not positions) that are worth keeping."""

    left: np.ndarray
    right: np.ndarray
    score: np.ndarray
    action: np.ndarray  # 2 link, 1 review
    reason: np.ndarray
    levels: np.ndarray
    contributions: np.ndarray


def score_pair_positions(
    config: RuleConfig,
    params: scoring.Parameters,
    features: pd.DataFrame,
    pairs: np.ndarray,
    *,
    keep_all: bool = False,
    levels: np.ndarray | None = None,
) -> PairResults:
    """Scores and decisions of the pairs (row positions in ``features``); ``levels``: their
    level matrix when already computed."""
    if levels is None:
        levels = levels_of(config, features, pairs)
    # Only the term-frequency columns of the left records are read.
    tf_columns = sorted({c.tf_column for c in config.comparisons if c.tf_column and c.name in params.tf})
    left = features[tf_columns].iloc[pairs[:, 0]]
    scored = scoring.score_pairs(config.comparisons, params, levels, left=left)
    decision = scoring.decide(
        config.comparisons,
        levels,
        scored,
        auto_threshold=config.auto_threshold,
        review_threshold=config.review_threshold,
    )
    keep = np.ones(len(pairs), dtype=bool) if keep_all else decision.action > 0
    ids = features["id"].to_numpy()
    return PairResults(
        left=ids[pairs[keep, 0]],
        right=ids[pairs[keep, 1]],
        score=decision.score[keep],
        action=decision.action[keep],
        reason=decision.reason[keep],
        levels=levels[keep],
        contributions=scored.contributions[keep],
    )


def explanation(config: RuleConfig, levels_row: np.ndarray, contributions_row: np.ndarray) -> list[dict]:
    """Per comparison: its fields, the level reached and its contribution in bits. Values are
    *not* stored: they are read from the customers and shown through the viewer's policy."""
    out = []
    for k, comparison in enumerate(config.comparisons):
        level = int(levels_row[k])
        out.append(
            {
                "comparison": comparison.name,
                "fields": list(comparison.fields),
                "level": "missing" if level == 0 else comparison.levels[level - 1],
                "weight": round(float(contributions_row[k]), 2),
            }
        )
    return out


class Explainer:
    """``explanation`` for many pairs: each comparison's entry is built once per (level,
    weight) reached, and with ``as_json`` returned as JSON text ready for COPY."""

    def __init__(self, config: RuleConfig, *, as_json: bool = False) -> None:
        self.config = config
        self.as_json = as_json
        self.cache: dict[tuple[int, int, float], object] = {}

    def __call__(self, levels_row: np.ndarray, contributions_row: np.ndarray) -> list[dict] | str:
        parts = [
            self._entry(k, level, weight)
            for k, (level, weight) in enumerate(zip(levels_row.tolist(), contributions_row.tolist(), strict=True))
        ]
        return "[" + ", ".join(parts) + "]" if self.as_json else [dict(p) for p in parts]

    def many(self, levels: np.ndarray, contributions: np.ndarray) -> list:
        """``self(levels[i], contributions[i])`` for every row, each comparison's entry built
        once per distinct key of the cache (level, weight rounded) in its column and each
        row's text joined from them: a batch run writes ~400k candidates at 1M records.
        Entries are made in the order of their first row, so the cache ends as explaining row
        by row leaves it (-0.0 and 0.0 are one key: the first one seen is the one printed)."""
        n = len(levels)
        if n == 0:
            return []
        positions = np.arange(n)
        entries = []
        for k in range(levels.shape[1]):
            weight_codes, weights = pd.factorize(contributions[:, k])
            rounded_codes, _rounded = pd.factorize(np.array([round(w, 2) for w in weights.tolist()], dtype=np.float64))
            level = levels[:, k].astype(np.int64)
            codes, _keys = pd.factorize(rounded_codes[weight_codes] * (int(level.max()) + 1) + level)
            first = np.empty(len(_keys), dtype=np.int64)
            first[codes[::-1]] = positions[::-1]  # each key's first row
            column = np.array(
                [self._entry(k, int(levels[f, k]), float(contributions[f, k])) for f in first.tolist()], dtype=object
            )
            entries.append(column[codes].tolist())
        if self.as_json:
            return ["[" + ", ".join(parts) + "]" for parts in zip(*entries, strict=True)]
        return [[dict(p) for p in parts] for parts in zip(*entries, strict=True)]

    def _entry(self, k: int, level: int, weight: float) -> object:
        key = (k, level, round(weight, 2))
        part = self.cache.get(key)
        if part is None:
            comparison = self.config.comparisons[k]
            part = {
                "comparison": comparison.name,
                "fields": list(comparison.fields),
                "level": "missing" if level == 0 else comparison.levels[level - 1],
                "weight": key[2],
            }
            part = json.dumps(part, ensure_ascii=False) if self.as_json else part
            self.cache[key] = part
        return part


def differ_function(config: RuleConfig, params: scoring.Parameters, features: pd.DataFrame):  # noqa: ANN201
    """For the clustering guard: which member pairs clearly differ (scored below the review
    band, a reliable field differing, or contradicting identity keys)."""
    position_of = pd.Series(np.arange(len(features)), index=features["id"].to_numpy())

    def differ(pairs: list[tuple[int, int]]) -> set[tuple[int, int]]:
        if not pairs:
            return set()
        arr = np.asarray(pairs, dtype=np.int64)
        pos = np.stack([position_of.loc[arr[:, 0]].to_numpy(), position_of.loc[arr[:, 1]].to_numpy()], axis=1)
        res = score_pair_positions(config, params, features, pos, keep_all=True)
        rel = scoring.reliable_disagreement(config.comparisons, res.levels)
        contra = scoring.identity_verdicts(config.comparisons, res.levels) == -1
        bad = (res.score < config.review_threshold) | rel | contra
        return {(int(a), int(b)) for a, b in arr[bad]}

    return differ


@dataclass
class BatchOutcome:
    pairs: PairResults
    clusters: list[list[int]]
    review: list[int]  # indexes into pairs (review band + refused links)
    params: scoring.Parameters
    stats: blocking.BlockingStats
    split_components: int = 0
    largest_component: int = 0


def run_in_memory(config: RuleConfig, features: pd.DataFrame) -> BatchOutcome:
    """The whole batch pipeline in one process (tests, small data, ``--inline``)."""
    features = features.reset_index(drop=True)
    stats = blocking.BlockingStats()
    pairs = blocking.block_pairs(features, config.blocking_keys, max_block=config.max_block, stats=stats)
    params = learn_parameters(config, features, pairs)
    results = score_pair_positions(config, params, features, pairs)
    clusters, review, split, largest = cluster_links(config, params, features, results)
    return BatchOutcome(
        pairs=results,
        clusters=clusters,
        review=review,
        params=params,
        stats=stats,
        split_components=split,
        largest_component=largest,
    )


GUARDED_COMPONENT = 200  # components up to this size have their member pairs checked


def guarded_ids(results: PairResults) -> set[int]:
    """The records whose features the clustering guard reads: members of the automatic links'
    components of more than two records (a component of two is accepted as it is)."""
    link_idx = np.flatnonzero(results.action == 2)
    links = list(zip(results.left[link_idx].tolist(), results.right[link_idx].tolist(), strict=True))
    return {m for members in clustering.components(links) if 2 < len(members) <= GUARDED_COMPONENT for m in members}


def cluster_links(
    config: RuleConfig, params: scoring.Parameters, features: pd.DataFrame, results: PairResults
) -> tuple[list[list[int]], list[int], int, int]:
    """``features`` must hold at least the records of ``guarded_ids(results)``."""
    link_idx = np.flatnonzero(results.action == 2)
    links = list(zip(results.left[link_idx].tolist(), results.right[link_idx].tolist(), strict=True))
    # Which member pairs of multi-record components clearly differ: scored in one vectorised
    # pass over every such pair rather than component by component.
    components = clustering.components(links)
    member_pairs = [
        (a, b)
        for members in components
        if 2 < len(members) <= GUARDED_COMPONENT
        for i, a in enumerate(members)
        for b in members[i + 1 :]
    ]
    cannot = differ_function(config, params, features)(member_pairs) if member_pairs else set()
    clustered = clustering.cluster(
        links,
        results.score[link_idx].tolist(),
        differ=cannot,
        max_size=config.max_cluster,
    )
    review = sorted(set(np.flatnonzero(results.action == 1).tolist()) | {int(link_idx[i]) for i in clustered.refused})
    return clustered.clusters, review, clustered.split_components, clustered.largest_component
