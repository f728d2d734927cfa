"""Where a batch run's merge phase spends its CPU, statement by statement (PostgreSQL) and
function by function (Python), on clusters saved once so the merge alone can be run again.

    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/crmhub_merge_bench CRMHUB_VAR_DIR=/tmp/var_merge
    python bench/dedup_generate.py --records 100000 --reset
    python bench/dedup_merge_profile.py --prepare          # run up to clustering, save the clusters
    createdb -T crmhub_merge_bench crmhub_merge_bench_1    # a copy per measurement (a merge changes it)
    DATABASE_URL=.../crmhub_merge_bench_1 python bench/dedup_merge_profile.py [--explain] [--python]

``--prepare`` creates a run, prepares and scores it and clusters its automatic links
(``dedup_run_cluster``), then saves the run's id and clusters in
``$CRMHUB_VAR_DIR/bench/merge_clusters.pkl``. Without it, the saved clusters are merged by
``customers_merge_many`` in this process (one process, so every statement is seen) with an execute
wrapper reading this connection's backend CPU (``/proc/<pid>/schedstat``) before and after each
statement; COPY streams do not pass the wrapper and show as "COPY and other". ``--explain`` adds the
plans (auto_explain, EXPLAIN ANALYZE) of the first statements over 200 ms; ``--python`` a cProfile
of the process (top functions by own time); ``--immediate`` makes the deferred foreign-key checks
run with their statements (``SET CONSTRAINTS ALL IMMEDIATE``) so their cost shows there. Also
printed: heap-only (HOT) updates per table.

The run's last step (candidates and review clusters, ``dedup_run_complete``) the same way:

    DATABASE_URL=.../crmhub_merge_bench_m python bench/dedup_merge_profile.py --merge-all 2   # once, on a copy
    createdb -T crmhub_merge_bench_m crmhub_merge_bench_c                                    # a copy per measurement
    DATABASE_URL=.../crmhub_merge_bench_c python bench/dedup_merge_profile.py --candidates

``--merge-all N`` merges every saved cluster in N processes (not profiled) and saves the result next
to the clusters; ``--candidates`` then completes the run on a copy of that database and prints the
candidate table's row count and md5 (every column but the timestamps the run stamps), to compare
code versions row for row. Statements sent on other connections (the candidates' second
connection) are not seen by the wrapper: the run's stats give those backends' CPU.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crmhub.settings")
os.environ.setdefault("DEBUG", "false")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

_SHAPE = re.compile(r"\s+")
TABLES = ("crmhub_customer", "crmhub_sourcerecord", "crmhub_historicalcustomer", "crmhub_historicalsourcerecord")


def _saved() -> Path:
    return Path(settings.VAR_DIR) / "bench" / "merge_clusters.pkl"


def _backend_pid() -> int:
    with connection.cursor() as c:
        c.execute("SELECT pg_backend_pid()")
        return c.fetchone()[0]


def _cpu_ns(pid: int) -> int:
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def _shape(sql: str) -> str:
    text = _SHAPE.sub(" ", sql).strip()
    text = re.sub(r"'[^']*'|\b\d+\b", "?", text)
    return text[:160]


def _table_stats() -> dict[str, tuple[int, int]]:
    with connection.cursor() as c:
        c.execute(
            "SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = ANY(%s)", [list(TABLES)]
        )
        return {name: (upd, hot) for name, upd, hot in c.fetchall()}


def prepare() -> None:
    from crmhub.choices import ChangeChannel
    from crmhub.context import change_context
    from dedup import services
    from dedup.models import DedupRunPart

    run = services.dedup_run_create()
    services.dedup_run_claim(run.pk)
    run.refresh_from_db()
    with change_context(channel=ChangeChannel.COMMAND, ref=f"dedup_run:{run.pk}"):
        services.dedup_run_prepare(run=run)
        for part in DedupRunPart.objects.filter(run=run).order_by("number"):
            services.dedup_run_score_part(part=part)
        state = services.dedup_run_cluster(run=run)
    _saved().parent.mkdir(parents=True, exist_ok=True)
    # The whole state too: ``--merge-all`` and ``--candidates`` complete the run from it.
    _saved().write_bytes(pickle.dumps({"run": run.pk, "clusters": state["clusters"], "state": state}))
    print(f"run {run.pk}: {len(state['clusters'])} clusters saved in {_saved()}")


def _merged_saved() -> Path:
    return Path(settings.VAR_DIR) / "bench" / "merge_result.pkl"


def merge_all(processes: int) -> None:
    """Merge every saved cluster (not profiled) and save the result, so that the run's last step
    (``dedup_run_complete``: candidates, review clusters) can be profiled on copies of this database."""
    from crmhub.choices import ChangeChannel
    from crmhub.context import change_context
    from dedup import services
    from dedup.models import DedupRun

    saved = pickle.loads(_saved().read_bytes())  # noqa: S301 - written by --prepare above
    run = DedupRun.objects.get(pk=saved["run"])
    stats: dict = {}
    started = time.perf_counter()
    with change_context(channel=ChangeChannel.MERGE, ref=f"dedup_run:{run.pk}"):
        merged = services.customers_merge_many(
            clusters=saved["clusters"], run=run, note="profile", processes=processes, stats=stats
        )
    _merged_saved().write_bytes(pickle.dumps({"merged": merged, "stats": stats}))
    print(f"{len(merged)} merges in {time.perf_counter() - started:.1f} s, saved in {_merged_saved()}")


def candidates_digest() -> tuple[int, str]:
    """The candidate table in id order, every column but the times the run stamps (``now``)."""
    with connection.cursor() as c:
        c.execute(
            "SELECT count(*), md5(string_agg(concat_ws(',', id, left_id, right_id, score, rule, explanation::text, "
            "reason, run_id, status, assignee_id, decided_by_id, decided_at IS NULL, note, merge_id, cluster, "
            "cluster_score, cluster_created IS NULL), '|' ORDER BY id)) FROM dedup_matchcandidate"
        )
        return c.fetchone()


def profile(*, explain: bool, python: bool, checks_immediate: bool, limit: int | None, phase: str = "merge") -> None:
    from crmhub.choices import ChangeChannel
    from crmhub.context import change_context
    from dedup import services
    from dedup.models import DedupRun

    saved = pickle.loads(_saved().read_bytes())  # noqa: S301 - written by --prepare above
    run = DedupRun.objects.get(pk=saved["run"])
    clusters = saved["clusters"][:limit] if limit else saved["clusters"]
    pid = _backend_pid()
    plans: list[str] = []
    if explain:
        with connection.cursor() as c:
            c.execute("LOAD 'auto_explain'")
            c.execute("SET auto_explain.log_min_duration = 200")
            c.execute("SET auto_explain.log_analyze = on")
            c.execute("SET auto_explain.log_buffers = on")
            c.execute("SET auto_explain.log_triggers = on")
            c.execute("SET auto_explain.log_level = notice")
        connection.connection.add_notice_handler(lambda diag: plans.append(diag.message_primary or ""))
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])

    immediate: list = []

    def wrapper(execute, sql, params, many, context):  # noqa: ANN001, ANN202
        if checks_immediate and connection.in_atomic_block and not immediate:
            # Foreign-key checks run with their statement instead of at the commit.
            immediate.append(1)
            connection.on_commit(immediate.clear)
            execute("SET CONSTRAINTS ALL IMMEDIATE", None, False, context)
        before = _cpu_ns(pid)
        try:
            return execute(sql, params, many, context)
        finally:
            entry = totals[_shape(sql)]
            entry[0] += (_cpu_ns(pid) - before) / 1e9
            entry[1] += 1

    with connection.cursor() as c:
        c.execute("SELECT pg_stat_force_next_flush()")
    stats_before = _table_stats()
    profiler = None
    if python:
        import cProfile

        profiler = cProfile.Profile()
    start_db, start_cpu, started = _cpu_ns(pid), time.process_time(), time.perf_counter()
    with connection.execute_wrapper(wrapper), change_context(channel=ChangeChannel.MERGE, ref=f"dedup_run:{run.pk}"):
        if profiler:
            profiler.enable()
        if phase == "candidates":
            done = pickle.loads(_merged_saved().read_bytes())  # noqa: S301 - written by --merge-all
            services.dedup_run_complete(
                run=run, state=saved["state"], merged=done["merged"], merge_stats=dict(done["stats"])
            )
            merged = done["merged"]
        else:
            merged = services.customers_merge_many(clusters=clusters, run=run, note="profile", processes=1)
        if profiler:
            profiler.disable()
    wall, cpu, db = time.perf_counter() - started, time.process_time() - start_cpu, (_cpu_ns(pid) - start_db) / 1e9
    if _backend_pid() != pid:
        sys.exit("The connection was replaced during the run: figures are incomplete.")
    wrapped = sum(v[0] for v in totals.values())
    print(
        f"{len(merged)} merges of {len(clusters)} clusters: wall {wall:.1f} s, "
        f"process CPU {cpu:.2f} s, backend CPU {db:.2f} s"
    )
    print(f"{'CPU s':>7} {'calls':>6}  statement")
    for shape, (seconds, calls) in sorted(totals.items(), key=lambda kv: -kv[1][0])[:25]:
        print(f"{seconds:>7.2f} {calls:>6}  {shape}")
    print(f"{db - wrapped:>7.2f} {'':>6}  COPY and other (not through the execute wrapper)")
    if phase == "candidates":
        run.refresh_from_db()
        print(
            f"run stats: candidates_seconds {run.stats.get('candidates_seconds')}, other connections' backends "
            f"{run.stats.get('candidates_other_db_cpu_seconds')} CPU s (not in the figures above)"
        )
        rows, digest = candidates_digest()
        print(f"candidate table (rows, md5 without the run's timestamps): {rows} {digest}")
    with connection.cursor() as c:
        c.execute("SELECT pg_stat_force_next_flush()")
    stats_after = _table_stats()
    for name in TABLES:
        upd = stats_after.get(name, (0, 0))[0] - stats_before.get(name, (0, 0))[0]
        hot = stats_after.get(name, (0, 0))[1] - stats_before.get(name, (0, 0))[1]
        print(f"{name}: {upd} updates, {hot} HOT")
    for plan in plans[:12]:
        # The statement's text holds its array parameters: its first words are enough.
        print(re.sub(r"'\{[^}\n]*\}'", "'{...}'", re.sub(r"(Query Text: .{0,200}).*", r"\1 ...", plan)))
    if profiler:
        import pstats

        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(60)
        stats.print_callers("match|search|iterencode|_load_iso|base.py:462")
    print(f"load average at the end: {os.getloadavg()}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prepare", action="store_true")
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--python", action="store_true")
    parser.add_argument("--limit", type=int, default=None, help="merge only the first N saved clusters")
    parser.add_argument("--immediate", action="store_true", help="foreign-key checks with each statement")
    parser.add_argument("--merge-all", type=int, metavar="PROCESSES", help="merge every saved cluster, save the result")
    parser.add_argument("--candidates", action="store_true", help="profile the run's last step after --merge-all")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("Run on PostgreSQL: set DATABASE_URL.")
    if args.prepare:
        prepare()
    elif args.merge_all:
        merge_all(args.merge_all)
    else:
        profile(
            explain=args.explain,
            python=args.python,
            checks_immediate=args.immediate,
            limit=args.limit,
            phase="candidates" if args.candidates else "merge",
        )


if __name__ == "__main__":
    main()
