"""The import pipeline's Python side alone: read a file in chunks and ``ImportPipeline.prepare``
each one (cleaning, JSON texts, content hashes, sealing, staging COPY text, customer extras),
nothing written. Prints CPU seconds of the read and of prepare, and a fingerprint of what was
prepared with every sealed value decrypted (Fernet tokens differ from run to run; their
plaintexts must not), so two versions of the code can be compared.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crmhub_bench \
      /work/main/.venv/bin/python bench/import_prepare_bench.py /tmp/imp_100k.csv [--profile] [--fingerprint]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crmhub.settings")
os.environ.setdefault("DEBUG", "0")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

_SEALED = re.compile(r"enc1:[A-Za-z0-9_=-]+")


def fingerprint_row(row, decrypt) -> str:  # noqa: ANN001
    def plain(text: str | None) -> str:
        return "" if text is None else _SEALED.sub(lambda m: "<" + decrypt(m[0]) + ">", text)

    return "\x1e".join(
        (
            str(row.row_number),
            row.key,
            repr(row.flags),
            row.record_hash,
            plain(row.sealed_raw_json),
            plain(row.sealed_normalized_json),
            plain(row.stage_fields),
            row.stage_extras or "",
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--profile", action="store_true", help="cProfile of prepare, top functions")
    parser.add_argument("--fingerprint", action="store_true", help="md5 of the prepared rows, sealed values decrypted")
    parser.add_argument("--chunk-rows", type=int, default=20_000)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)

    from accounts.crypto import decrypt
    from crmhub.services import source_get_or_create
    from imports.pipeline import ImportPipeline
    from imports.readers import iter_chunks
    from imports.services import file_run_from_path, mapping_suggest

    source, _ = source_get_or_create(code="prepbench")
    run = file_run_from_path(
        path=args.path, source=source, plan_for=lambda layout: mapping_suggest(headers=layout.headers), enqueue=False
    )
    pipeline = ImportPipeline(run, chunk_rows=args.chunk_rows)
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    digest = hashlib.md5()
    read_cpu = prep_cpu = 0.0
    rows = issues_n = 0
    next_row = pipeline.layout.header_row + 2
    started = time.perf_counter()
    chunks = iter_chunks(run.file.path, pipeline.layout, chunksize=args.chunk_rows)
    while True:
        t0 = time.process_time()
        if profiler:
            profiler.enable()
        frame = next(chunks, None)
        t1 = time.process_time()
        read_cpu += t1 - t0
        if frame is None:
            if profiler:
                profiler.disable()
            break
        prepared, issues = pipeline.prepare(frame, next_row)
        if profiler:
            profiler.disable()
        prep_cpu += time.process_time() - t1
        next_row += len(frame)
        rows += len(prepared)
        issues_n += len(issues)
        if args.fingerprint:
            for row in prepared:
                digest.update(fingerprint_row(row, decrypt).encode())
            for issue in issues:
                digest.update(repr((issue.row_number, issue.key, sorted(issue.raw.items()), issue.reasons)).encode())
    wall = time.perf_counter() - started
    print(
        f"{rows} rows prepared, {issues_n} refused; wall {wall:.1f} s; CPU read {read_cpu:.2f} s, "
        f"prepare {prep_cpu:.2f} s, total {read_cpu + prep_cpu:.2f} s; load {os.getloadavg()}"
    )
    if args.fingerprint:
        print(f"fingerprint {digest.hexdigest()}")
    if profiler:
        import pstats

        pstats.Stats(profiler).sort_stats("tottime").print_stats(45)


if __name__ == "__main__":
    main()
