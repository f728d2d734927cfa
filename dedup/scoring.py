"""Fellegi–Sunter scoring. Pure (numpy, no ORM).

For a comparison level ``l``: ``m_l`` = P(level l | same person), ``u_l`` = P(level l |
different people), and the level's weight is ``log2(m_l / u_l)`` bits. A pair's match
weight is the prior log-odds plus the sum of its levels' weights; its score is the
posterior probability ``2^w / (1 + 2^w)``. Missing values (level 0) weigh nothing.

- ``u`` comes from the data: the level frequencies among *random* pairs of records (almost
  all of which are different people), smoothed toward the rule's defaults.
- Term frequency: an exact agreement on value ``v`` has u ≈ frequency of ``v``; so agreeing
  on 张伟 (thousands of people) weighs less than agreeing on a rare name, and a shared
  family phone less than a personal one: ``w = log2(m_exact / max(tf_v, floor))``.
- ``m`` is learnt by EM over the candidate pairs (u and the TF fixed), with the defaults as
  a Dirichlet prior so that a small or lopsided data set cannot drive it to 0 or 1.
- Reliable disagreement (two different valid ID numbers, two different birth dates) is
  strongly negative by construction of m/u, and an identity-key contradiction caps the
  score below the auto-link threshold (see ``identity_verdicts``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dedup.comparators import Comparison, comparison_levels

EPS = 1e-9


@dataclass
class Parameters:
    """Learnt m/u per comparison level (index 0 = level 1) plus the prior match rate."""

    m: dict[str, list[float]]
    u: dict[str, list[float]]
    prior: float
    tf: dict[str, dict[str, float]] = field(default_factory=dict)
    tf_floor: dict[str, float] = field(default_factory=dict)  # records counted per TF table
    em_iterations: int = 0
    random_pairs: int = 0
    anchor_pairs: int = 0

    def weights(self, name: str) -> np.ndarray:
        """Weights indexed by level number (0 = missing = 0 bits)."""
        m = np.asarray(self.m[name])
        u = np.asarray(self.u[name])
        return np.r_[0.0, np.log2(np.maximum(m, EPS) / np.maximum(u, EPS))]

    def to_json(self) -> dict:
        return {
            "m": self.m,
            "u": self.u,
            "prior": self.prior,
            "em_iterations": self.em_iterations,
            "random_pairs": self.random_pairs,
            "weights": {k: self.weights(k)[1:].round(3).tolist() for k in self.m},
        }

    @classmethod
    def defaults(cls, comparisons: list[Comparison], prior: float = 0.05) -> Parameters:
        return cls(
            m={c.name: list(c.default_m) for c in comparisons},
            u={c.name: list(c.default_u) for c in comparisons},
            prior=prior,
        )


def _normalise(counts: np.ndarray, prior: np.ndarray, strength: float) -> list[float]:
    smoothed = counts + strength * prior
    return (smoothed / smoothed.sum()).tolist()


def estimate_u(
    comparisons: list[Comparison],
    features: pd.DataFrame,
    *,
    samples: int = 200_000,
    seed: int = 7,
    prior_strength: float = 200.0,
    params: dict | None = None,
) -> tuple[dict[str, list[float]], int]:
    """u per level from random pairs of records (smoothed toward the defaults)."""
    n = len(features)
    u: dict[str, list[float]] = {}
    if n < 2:
        return {c.name: list(c.default_u) for c in comparisons}, 0
    rng = np.random.default_rng(seed)
    total = min(samples, n * (n - 1) // 2)
    i = rng.integers(0, n, total)
    j = rng.integers(0, n, total)
    keep = i != j
    i, j = i[keep], j[keep]
    levels = comparison_levels(comparisons, features.iloc[i], features.iloc[j], params)
    for k, c in enumerate(comparisons):
        col = levels[:, k]
        counts = np.bincount(col, minlength=len(c.levels) + 1)[1:].astype(float)
        u[c.name] = _normalise(counts, np.asarray(c.default_u), prior_strength)
    return u, len(i)


def term_frequencies(comparisons: list[Comparison], features: pd.DataFrame) -> tuple[dict, dict]:
    """Per TF column: value → number of records holding it (values held by more than one
    record only), and the number of records (see ``tf_u``)."""
    tf: dict[str, dict[str, float]] = {}
    sizes: dict[str, float] = {}
    for c in comparisons:
        if not c.tf_column:
            continue
        counts = features[c.tf_column].value_counts()
        counts = counts[(counts.index != "") & (counts > 1)]
        tf[c.name] = {str(k): int(v) for k, v in counts.items()}
        sizes[c.name] = float(len(features))
    return tf, sizes


TF_PSEUDO_RECORDS = 1000.0


def tf_u(count: np.ndarray, n: float, u_exact: float) -> np.ndarray:
    """u of an exact agreement on a value held by ``count`` of ``n`` records: the value's
    share, shrunk toward the level's plain u by 1000 pseudo-records so that a tiny data set
    (where every value looks common) does not wipe the evidence out."""
    return (count + TF_PSEUDO_RECORDS * u_exact) / (n + TF_PSEUDO_RECORDS)


def em_m(
    comparisons: list[Comparison],
    levels: np.ndarray,
    u: dict[str, list[float]],
    *,
    prior: float = 0.05,
    iterations: int = 30,
    prior_strength: float = 50.0,
    tol: float = 1e-5,
) -> tuple[dict[str, list[float]], float, int]:
    """m per level and the prior match rate by EM over the candidate pairs' level matrix."""
    m = {c.name: np.asarray(c.default_m, dtype=float) for c in comparisons}
    uu = {c.name: np.asarray(u[c.name], dtype=float) for c in comparisons}
    if len(levels) == 0:
        return {k: v.tolist() for k, v in m.items()}, prior, 0
    lam = prior
    done = 0
    for done in range(1, iterations + 1):  # noqa: B007
        logm = np.zeros(len(levels))
        logu = np.zeros(len(levels))
        for k, c in enumerate(comparisons):
            col = levels[:, k]
            mk = np.r_[1.0, m[c.name]]
            uk = np.r_[1.0, uu[c.name]]
            logm += np.log(np.maximum(mk[col], EPS))
            logu += np.log(np.maximum(uk[col], EPS))
        odds = np.log(lam / (1 - lam)) + logm - logu
        p = 1.0 / (1.0 + np.exp(-np.clip(odds, -60, 60)))
        new_lam = float(np.clip(p.mean(), 1e-6, 1 - 1e-6))
        change = abs(new_lam - lam)
        lam = new_lam
        for k, c in enumerate(comparisons):
            col = levels[:, k]
            counts = np.bincount(col, weights=p, minlength=len(c.levels) + 1)[1:]
            new = np.asarray(_normalise(counts, np.asarray(c.default_m), prior_strength))
            change = max(change, float(np.abs(new - m[c.name]).max()))
            m[c.name] = new
        if change < tol:
            break
    return {k: v.tolist() for k, v in m.items()}, lam, done


MIN_ANCHORS = 30


def learn_m(
    comparisons: list[Comparison], levels: np.ndarray, u: dict[str, list[float]], *, prior_strength: float = 20.0
) -> tuple[dict[str, list[float]], float, int, int]:
    """m per level, preferably from *anchor* pairs: candidate pairs agreeing on an identity
    key with none disagreeing are (nearly) certainly one person, so how often each other
    comparison reaches each level among them estimates its m directly. Plain EM over all
    candidate pairs drifts toward "same household" or "same birth cohort" as its match class
    when blocks are coarse; anchors do not. The identity comparisons keep their defaults (an
    anchor says nothing about them), and the prior match rate is then found by EM with m and u
    fixed. With fewer than ``MIN_ANCHORS`` anchors, full EM (m and prior) is used.

    Returns (m, prior, EM iterations, anchor pairs used).
    """
    verdict = identity_verdicts(comparisons, levels)
    anchors = levels[verdict == 1]
    if len(anchors) < MIN_ANCHORS:
        m, prior, iterations = em_m(comparisons, levels, u)
        return m, prior, iterations, 0
    m: dict[str, list[float]] = {}
    for k, c in enumerate(comparisons):
        if c.identity_key:
            m[c.name] = list(c.default_m)
            continue
        counts = np.bincount(anchors[:, k], minlength=len(c.levels) + 1)[1:].astype(float)
        m[c.name] = _normalise(counts, np.asarray(c.default_m), prior_strength)
    prior, iterations = em_prior(comparisons, levels, m, u)
    return m, prior, iterations, len(anchors)


def em_prior(
    comparisons: list[Comparison],
    levels: np.ndarray,
    m: dict[str, list[float]],
    u: dict[str, list[float]],
    *,
    start: float = 0.05,
    iterations: int = 50,
    tol: float = 1e-6,
) -> tuple[float, int]:
    """The share of candidate pairs that are matches, by EM with m and u fixed."""
    llr = np.zeros(len(levels))
    for k, c in enumerate(comparisons):
        mk = np.r_[1.0, m[c.name]]
        uk = np.r_[1.0, u[c.name]]
        llr += np.log(np.maximum(mk, EPS) / np.maximum(uk, EPS))[levels[:, k]]
    lam = start
    done = 0
    for done in range(1, iterations + 1):  # noqa: B007
        p = 1.0 / (1.0 + np.exp(-np.clip(np.log(lam / (1 - lam)) + llr, -60, 60)))
        new = float(np.clip(p.mean(), 1e-6, 1 - 1e-6))
        if abs(new - lam) < tol:
            lam = new
            break
        lam = new
    return lam, done


@dataclass
class Scored:
    """Per pair: total weight (bits), score (probability), per-comparison weights."""

    weight: np.ndarray
    score: np.ndarray
    contributions: np.ndarray  # (pairs × comparisons) bits


def score_pairs(
    comparisons: list[Comparison],
    params: Parameters,
    levels: np.ndarray,
    left: pd.DataFrame | None = None,
) -> Scored:
    """Scores of pairs given their level matrix. With ``left`` (the left records' features)
    exact agreements on a TF column are weighted by the agreed value's frequency."""
    contributions = np.zeros(levels.shape, dtype=np.float64)
    for k, c in enumerate(comparisons):
        col = levels[:, k]
        weights = params.weights(c.name)
        contributions[:, k] = weights[col]
        if left is not None and c.tf_column and c.name in params.tf:
            exact = col == 1
            if exact.any():
                values = left[c.tf_column].to_numpy(dtype=object)[exact]
                table = params.tf[c.name]
                n = params.tf_floor.get(c.name, 0.0)
                count = np.array([table.get(v, 1) for v in values], dtype=float)
                u_tf = tf_u(count, n, params.u[c.name][0])
                tf_weight = np.log2(params.m[c.name][0] / u_tf)
                # TF sharpens within bounds: a common value weighs less, a rare one at most 3 bits more.
                contributions[exact, k] = np.minimum(tf_weight, weights[1] + 3.0)
    prior_bits = float(np.log2(params.prior / (1 - params.prior)))
    total = prior_bits + contributions.sum(axis=1)
    score = 1.0 / (1.0 + np.power(2.0, -np.clip(total, -200, 200)))
    return Scored(weight=total, score=score, contributions=contributions)


#
# Identity keys: deterministic links and contradictions
#

DETERMINISTIC = "deterministic"
CONTRADICTION = "contradiction"


def identity_verdicts(comparisons: list[Comparison], levels: np.ndarray) -> np.ndarray:
    """Per pair: 1 = deterministic link (an identity key agrees, none disagrees), -1 =
    contradiction (one identity key agrees, another disagrees — e.g. same unionid, two
    different valid ID numbers: something is wrong, a person must look), 0 = neither."""
    idx = [k for k, c in enumerate(comparisons) if c.identity_key]
    if not idx:
        return np.zeros(len(levels), dtype=np.int8)
    agree = np.zeros(len(levels), dtype=bool)
    disagree = np.zeros(len(levels), dtype=bool)
    for k in idx:
        col = levels[:, k]
        agree |= col == 1
        disagree |= col == comparisons[k].different
    return np.where(agree & ~disagree, 1, np.where(agree & disagree, -1, 0)).astype(np.int8)


def reliable_disagreement(comparisons: list[Comparison], levels: np.ndarray) -> np.ndarray:
    """Pairs that differ on a reliable field (valid ID number, birth date, unionid)."""
    out = np.zeros(len(levels), dtype=bool)
    for k, c in enumerate(comparisons):
        if c.reliable:
            out |= levels[:, k] == c.different
    return out


@dataclass
class Decision:
    """What to do with each pair: 2 = link automatically, 1 = review, 0 = drop."""

    action: np.ndarray
    score: np.ndarray
    reason: np.ndarray  # object array of short codes


def decide(
    comparisons: list[Comparison],
    levels: np.ndarray,
    scored: Scored,
    *,
    auto_threshold: float,
    review_threshold: float,
) -> Decision:
    verdict = identity_verdicts(comparisons, levels)
    differ = reliable_disagreement(comparisons, levels)
    score = scored.score.copy()
    action = np.where(score >= auto_threshold, 2, np.where(score >= review_threshold, 1, 0))
    reason = np.where(action == 2, "score", np.where(action == 1, "score", "")).astype(object)
    # A shared identity key with nothing contradicting it links whatever the fuzzy fields say.
    det = verdict == 1
    action = np.where(det, 2, action)
    score = np.where(det, np.maximum(score, 1.0), score)
    reason[det] = DETERMINISTIC
    # Contradicting identity keys, or a reliable field disagreeing: never automatic.
    capped = ((verdict == -1) | differ) & (action == 2)
    action = np.where(capped, 1, action)
    reason[capped & (verdict == -1)] = CONTRADICTION
    reason[capped & (verdict != -1)] = "reliable_field_differs"
    contra = verdict == -1
    action = np.where(contra & (action == 0), 1, action)
    reason[contra] = CONTRADICTION
    # A vetoing disagreement (the name) with no identity key agreeing: two people — a family
    # sharing phone and address, not a duplicate. Not even worth a steward's time.
    vetoed = np.zeros(len(levels), dtype=bool)
    for k, c in enumerate(comparisons):
        if c.veto:
            vetoed |= levels[:, k] == c.different
    vetoed &= verdict == 0
    action = np.where(vetoed, 0, action)
    reason[vetoed] = ""
    return Decision(action=action.astype(np.int8), score=score, reason=reason)
