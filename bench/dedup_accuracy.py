"""Accuracy of duplicate detection against the generated truth.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crmhub_dedup_bench \
        python bench/dedup_generate.py --records 10000 --reset
    DATABASE_URL=... python bench/dedup_accuracy.py --records 10000

Runs ``dedup_run --inline`` (unless ``--no-run``), then compares the final clusters (source
records grouped by surviving golden record) with the true people: pairwise precision, recall and
F1; the precision of the automatic links alone; and how many true pairs wait in the review queue.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crmhub.settings")
# Measured as deployed: without DEBUG (which keeps every query's SQL text in memory).
os.environ.setdefault("DEBUG", "false")


def pairs_within(groups: dict) -> int:
    return sum(n * (n - 1) // 2 for n in Counter(groups.values()).values())


def truth(csv_path: Path | None) -> dict[int, int]:
    """customer id -> person, from the generator's table in the database (or an older CSV)."""
    from django.db import connection

    if csv_path is not None:
        with csv_path.open() as handle:
            return {int(row["customer_id"]): int(row["person"]) for row in csv.DictReader(handle)}
    with connection.cursor() as cursor:
        cursor.execute("SELECT customer_id, person FROM bench_dedup_truth")
        return dict(cursor.fetchall())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--no-run", action="store_true")
    parser.add_argument(
        "--truth", type=Path, help="CSV of a database generated before the truth was kept in it (customer_id, person)"
    )
    args = parser.parse_args()
    import django

    django.setup()
    from django.core.management import call_command

    from dedup.choices import CandidateStatus
    from dedup.models import MatchCandidate
    from dedup.selectors import survivor_map

    person = truth(args.truth)
    if len(person) != args.records:
        sys.exit(f"the truth holds {len(person)} records, not {args.records}: generate this database again")
    summary = {}
    if not args.no_run:
        out = io.StringIO()
        call_command("dedup_run", "--inline", stdout=out)
        summary = json.loads(out.getvalue().strip().splitlines()[-1])

    survivors = survivor_map()
    cluster = {cid: survivors.get(cid, cid) for cid in person}
    true_pairs = pairs_within(person)
    predicted_pairs = pairs_within(cluster)
    joint = pairs_within({cid: (cluster[cid], person[cid]) for cid in person})
    precision = joint / predicted_pairs if predicted_pairs else 1.0
    recall = joint / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0

    # Only pairs of generated records (real-time arrivals of dedup_speed.py have no truth).
    auto = [
        (a, b)
        for a, b in MatchCandidate.objects.filter(status=CandidateStatus.AUTO_MERGED).values_list("left_id", "right_id")
        if a in person and b in person
    ]
    auto_ok = sum(1 for a, b in auto if person.get(a) == person.get(b))
    pending = [
        (a, b)
        for a, b in MatchCandidate.objects.filter(status=CandidateStatus.PENDING).values_list("left_id", "right_id")
        if a in person and b in person
    ]
    pending_true = sum(1 for a, b in pending if person.get(a) == person.get(b))
    # Recall if a steward approved every true pair in the queue (an upper bound of the workflow).
    reviewed = dict(cluster)
    parent = {}

    def find(x):  # noqa: ANN001, ANN202
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    for a, b in pending:
        if person.get(a) == person.get(b):
            ra, rb = find(cluster.get(a, a)), find(cluster.get(b, b))
            if ra != rb:
                parent[ra] = rb
    reviewed = {cid: find(c) for cid, c in cluster.items()}
    joint_r = pairs_within({cid: (reviewed[cid], person[cid]) for cid in person})
    pred_r = pairs_within(reviewed)
    result = {
        "records": len(person),
        "people": len(set(person.values())),
        "run": summary,
        "true_pairs": true_pairs,
        "predicted_pairs": predicted_pairs,
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "auto_links": len(auto),
        "auto_link_precision": round(auto_ok / len(auto), 4) if auto else None,
        "pending": len(pending),
        "pending_true": pending_true,
        "pending_precision": round(pending_true / len(pending), 4) if pending else None,
        "after_review": {
            "precision": round(joint_r / pred_r, 4) if pred_r else 1.0,
            "recall": round(joint_r / true_pairs, 4) if true_pairs else 1.0,
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
