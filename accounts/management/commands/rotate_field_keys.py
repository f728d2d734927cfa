"""Re-encrypt sealed values under the first key of FIELD_ENCRYPTION_KEY; prints JSON counts."""

from __future__ import annotations

import json
import time

from django.core.management.base import BaseCommand, CommandError

from accounts.keyrotation import rotate_field_keys


class Command(BaseCommand):
    help = (
        "Re-encrypt Customer.id_number, sealed values in SourceRecord.raw/normalized and their history "
        "under the first key of FIELD_ENCRYPTION_KEY, and recompute blind indexes. Idempotent."
    )

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("--batch-size", type=int, default=1000)

    def handle(self, *args, batch_size: int, **options) -> None:  # noqa: ANN002, ANN003
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        started = time.monotonic()
        try:
            report = rotate_field_keys(
                batch_size=batch_size,
                progress=lambda line: self.stderr.write(line) if options["verbosity"] > 1 else None,
            )
        except ValueError as exc:  # a value written under a key no longer configured
            raise CommandError(str(exc)) from exc
        report["seconds"] = round(time.monotonic() - started, 3)
        self.stdout.write(json.dumps(report))
