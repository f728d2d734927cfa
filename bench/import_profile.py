"""Profile one pipeline run per stage with pyinstrument (a dev tool: install it into the venv
for this, it is not in requirements.txt).

    /work/main/.venv/bin/pip install pyinstrument
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crmhub_bench \
      /work/main/.venv/bin/python bench/import_profile.py /tmp/customers_100k.csv > /tmp/import_profile.txt

Empties the import tables first (like bench/import_bench.py), then prints the run's summary
and the call tree with wall time per stage, and the process CPU time (wall time on a shared
machine includes waiting for a core; CPU time does not).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crmhub.settings")
os.environ.setdefault("DEBUG", "0")

import django  # noqa: E402

django.setup()

import import_bench  # noqa: E402
from django.core.management import call_command  # noqa: E402
from pyinstrument import Profiler  # noqa: E402


def main() -> None:
    call_command("migrate", verbosity=0)
    import_bench.reset()
    profiler = Profiler(interval=0.002)
    cpu = time.process_time()
    profiler.start()
    seconds, rows, summary = import_bench.pipeline(sys.argv[1])
    profiler.stop()
    print(f"{rows} rows in {seconds:.1f} s wall, {time.process_time() - cpu:.1f} s CPU; {summary}")
    print(profiler.output_text(unicode=True))


if __name__ == "__main__":
    main()
