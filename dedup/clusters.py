"""Review clusters kept on the candidates: every pending candidate carries the key of its
connected component over pending candidates (``cluster`` = the smallest candidate id in it),
the component's best score and its oldest proposal, so the review queue reads one page of
clusters through an index instead of grouping the whole backlog on each page view.

Whoever adds, rescores or decides pending candidates calls ``clusters_refresh`` with the
customers concerned (in the same transaction); only the components reachable from them are
recomputed. Decided candidates keep their last key: it is how a split is found (the old key
names the rest of the former cluster)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from django.db import connection, transaction
from django.db.models import Q

from dedup.choices import CandidateStatus

CHUNK = 1000  # customers per IN list (SQLite's variable limit)
ARRAY_CHUNK = 50_000  # customers per array parameter (PostgreSQL)
# Refreshes run one at a time on PostgreSQL: a refresh that waited sees what the one before it
# committed, so two transactions touching one cluster never leave it stale.
# Above this many customers to refresh around, recompute every pending candidate's cluster instead.
REBUILD_ABOVE = 20_000
LOCK_KEY = 0x0C1_0573  # pg_advisory_xact_lock key ("clusters")


def _model():  # noqa: ANN202
    from dedup.models import MatchCandidate

    return MatchCandidate


def components(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Connected components of the edges (left[i], right[i]): a component label per edge.
    Vectorised (min-label propagation with pointer jumping): tens of milliseconds for 10⁵
    edges, where a Python union-find over the same pairs takes seconds."""
    if not len(left):
        return np.empty(0, dtype=np.int64)
    _nodes, dense = np.unique(np.concatenate([left, right]), return_inverse=True)
    lo, hi = dense[: len(left)], dense[len(left) :]
    labels = np.arange(len(_nodes))
    while True:
        smallest = np.minimum(labels[lo], labels[hi])
        new = labels.copy()
        np.minimum.at(new, lo, smallest)
        np.minimum.at(new, hi, smallest)
        new = new[new]
        if np.array_equal(new, labels):
            return labels[lo]
        labels = new


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    size = ARRAY_CHUNK if connection.vendor == "postgresql" else CHUNK
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _in(qs, column: str, ids: list[int]):  # noqa: ANN001, ANN202
    """``qs`` narrowed to ``column`` in ``ids``; on PostgreSQL one array parameter instead of
    thousands of placeholders (a batch run refreshes around ~10⁵ customers, and splitting
    such statements into placeholders cost psycopg more than the queries cost the server)."""
    if connection.vendor != "postgresql":
        return qs.filter(**{f"{column}__in": ids})
    column = qs.model._meta.get_field(column).column
    return qs.extra(where=[f'"{qs.model._meta.db_table}"."{column}" = ANY(%s)'], params=[ids])  # noqa: S610


def candidates_touching(qs, ids: list[int]):  # noqa: ANN001, ANN202
    """Candidates with either side in ``ids``."""
    if connection.vendor != "postgresql":
        return qs.filter(Q(left_id__in=ids) | Q(right_id__in=ids))
    table = qs.model._meta.db_table
    return qs.extra(  # noqa: S610 - names from the model
        where=[f'("{table}"."left_id" = ANY(%s) OR "{table}"."right_id" = ANY(%s))'], params=[ids, ids]
    )


def clusters_refresh(customer_ids: Iterable[int]) -> int:
    """Recompute the clusters of the pending candidates reachable from ``customer_ids`` (and of
    the rest of any former cluster one of their candidates belonged to). Returns how many
    candidates changed."""
    seeds = {int(i) for i in customer_ids if i is not None}
    if not seeds:
        return 0
    if len(seeds) > REBUILD_ABOVE:
        # A batch run touches 10⁵–10⁶ customers: probing the candidates around each of them
        # took minutes at 1M (every probe of thousands of ids a scan of the candidate table),
        # while one read of all pending candidates takes about a second and gives the same
        # components (rows already right are not written).
        return clusters_rebuild()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
        return _refresh(seeds)


def _refresh(seeds: set[int]) -> int:
    model = _model()
    # Former clusters of the seeds' candidates (any status): a decided candidate may have been
    # what held the rest of its cluster together.
    keys: set[int] = set()
    for chunk in _chunks(sorted(seeds)):
        keys |= set(
            candidates_touching(model.objects.filter(cluster__isnull=False), chunk)
            .values_list("cluster", flat=True)
            .distinct()
        )
    pending = model.objects.filter(status=CandidateStatus.PENDING)
    for chunk in _chunks(sorted(keys)):
        for left, right in _in(pending, "cluster", chunk).values_list("left_id", "right_id"):
            seeds |= {left, right}
    # Walk outward over pending candidates until the components are whole.
    rows: dict[int, tuple] = {}
    seen: set[int] = set()
    frontier = seeds
    while frontier:
        seen |= frontier
        found = []
        for chunk in _chunks(sorted(frontier)):
            found += candidates_touching(pending, chunk).values_list(
                "pk", "left_id", "right_id", "score", "created_at", "cluster", "cluster_score", "cluster_created"
            )
        frontier = set()
        for row in found:
            if row[0] not in rows:
                rows[row[0]] = row
                frontier |= {row[1], row[2]} - seen
    return _write(model, list(rows.values()))


def clusters_rebuild() -> int:
    """Recompute every pending candidate's cluster (the migration's backfill; a repair)."""
    model = _model()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
        rows = list(
            model.objects.filter(status=CandidateStatus.PENDING).values_list(
                "pk", "left_id", "right_id", "score", "created_at", "cluster", "cluster_score", "cluster_created"
            )
        )
        return _write(model, rows)


def _write(model, rows: list[tuple]) -> int:  # noqa: ANN001
    """Label ``rows`` (whole components) and store the label, best score and oldest proposal
    of each component on the rows where they differ."""
    if not rows:
        return 0
    pk = np.array([r[0] for r in rows], dtype=np.int64)
    label = components(np.array([r[1] for r in rows], dtype=np.int64), np.array([r[2] for r in rows], dtype=np.int64))
    key: dict[int, int] = {}
    best: dict[int, float] = {}
    oldest: dict[int, object] = {}
    for i, lab in enumerate(label.tolist()):
        r = rows[i]
        key[lab] = min(key.get(lab, r[0]), r[0])
        best[lab] = max(best.get(lab, r[3]), r[3])
        oldest[lab] = min(oldest.get(lab, r[4]), r[4])
    changed = []
    for i, lab in enumerate(label.tolist()):
        new = (key[lab], best[lab], oldest[lab])
        if rows[i][5:8] != new:
            changed.append((int(pk[i]), *new))
    if not changed:
        return 0
    table = model._meta.db_table
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} AS m SET cluster = v.k, cluster_score = v.s, cluster_created = v.c "  # noqa: S608
                "FROM unnest(%s::bigint[], %s::bigint[], %s::float8[], %s::timestamptz[]) AS v(id, k, s, c) "
                "WHERE m.id = v.id",
                [[c[0] for c in changed], [c[1] for c in changed], [c[2] for c in changed], [c[3] for c in changed]],
            )
    else:
        by_value: dict[tuple, list[int]] = {}
        for pk_, *value in changed:
            by_value.setdefault(tuple(value), []).append(pk_)
        for (k, s, c), pks in by_value.items():
            for chunk in _chunks(pks):
                model.objects.filter(pk__in=chunk).update(cluster=k, cluster_score=s, cluster_created=c)
    return len(changed)


def clusters_refresh_run(run) -> int:  # noqa: ANN001
    """After a batch run wrote its candidates: the clusters around its candidates and its
    merges (whose tombstones' pending candidates were superseded)."""
    from dedup.models import Merge

    model = _model()
    if Merge.objects.filter(run=run).count() > REBUILD_ABOVE:
        # Each merge has its own survivor: more customers than that to refresh around, so
        # ``clusters_refresh`` would rebuild — without reading ~10⁶ candidates and merged ids.
        return clusters_rebuild()
    ids: set[int] = set()
    for left, right in model.objects.filter(run=run).values_list("left_id", "right_id").iterator(chunk_size=5000):
        ids |= {left, right}
    for survivor, merged in (
        Merge.objects.filter(run=run).values_list("survivor_id", "merged_ids").iterator(chunk_size=5000)
    ):
        ids.add(survivor)
        ids |= {int(m) for m in merged or []}
    return clusters_refresh(ids)


def clusters_heal() -> int:
    """Give a cluster to pending candidates written without one (an admin edit, a writer that
    did not refresh): a queue never loses a candidate. One indexed probe when there are none."""
    model = _model()
    stray = model.objects.filter(status=CandidateStatus.PENDING, cluster__isnull=True)
    if not stray.exists():
        return 0
    ids: set[int] = set()
    for left, right in stray.values_list("left_id", "right_id"):
        ids |= {left, right}
    return clusters_refresh(ids)
