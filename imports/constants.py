"""Limits and sizes of the import pipeline."""

from __future__ import annotations

SAMPLE_BYTES = 256 * 1024  # read to detect encoding, delimiter and header row
HEADER_SCAN_ROWS = 30  # title rows above the header are looked for this far down
# Decompression-bomb guards for XLSX (checked on the zip directory before opening it).
MAX_UNCOMPRESSED_BYTES = 2 * 1024 * 1024 * 1024
MAX_ZIP_RATIO = 200
MAX_ZIP_MEMBERS = 10_000
CHUNK_ROWS = 20_000  # rows per chunk of a run (progress, cancel checks and transactions are per chunk)
# A chunk with fewer rows is written by the run's own connection, not by write lanes (imports.lanes):
# lanes cost a connection each (opened at the run's first big chunk) and round trips per chunk.
LANE_MIN_ROWS = 2_000
SAMPLES_PER_KIND = 20  # dry-run samples kept per outcome
ISSUES_KEPT = 100_000  # rows of the error report kept per run
