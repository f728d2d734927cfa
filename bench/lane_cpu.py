"""CPU seconds of the import pipeline's write-lane backends, for the benchmarks.

With write lanes (``imports.lanes``, ``CRMHUB_IMPORT_WRITE_LANES`` > 1) a run's chunks are
written by one PostgreSQL backend per lane, besides the run's own connection; they end with the
run. ``install()`` makes each lane note its backend's pid when it first opens a transaction, and
read that backend's CPU time (user + system, from /proc: the server must run on this machine)
just before the lanes are closed; ``lane_cpu()`` is their sum so far. A bench adds it to the CPU
of its own connection's backend.
"""

from __future__ import annotations

import os
from pathlib import Path

_total = 0.0


def pid_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def install() -> None:
    from django.db import connection

    from imports import lanes

    begin, close = lanes._Lane.begin, lanes.WriteLanes.close
    if getattr(begin, "bench_wrapped", False):
        return

    def noting_begin(self, sql, params):  # noqa: ANN001, ANN202
        begin(self, sql, params)
        if getattr(self, "bench_pid", None) is None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                self.bench_pid = cursor.fetchone()[0]

    def reading_close(self):  # noqa: ANN001, ANN202
        global _total
        for lane in self.lanes:
            pid = getattr(lane, "bench_pid", None)
            if pid is not None:
                _total += pid_cpu(pid)  # the backend was started for this lane: all its CPU is the run's
        close(self)

    noting_begin.bench_wrapped = True  # type: ignore[attr-defined]
    lanes._Lane.begin = noting_begin
    lanes.WriteLanes.close = reading_close


def lane_cpu() -> float:
    """CPU seconds of every lane backend closed so far."""
    return _total
