"""``manage.py export_xref PATH``: CSV ``source,source_key,customer_id``, one row per source
record, ``customer_id`` being the surviving golden record (merged ones followed)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from dedup import selectors


class Command(BaseCommand):
    help = "Export the cross-reference of source keys to surviving golden records."

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("path")
        parser.add_argument("--inline", action="store_true", help="Accepted for symmetry: exports always run here.")

    def handle(self, *args, **options) -> None:  # noqa: ANN002, ANN003
        try:
            with open(options["path"], "w", newline="", encoding="utf-8") as handle:
                rows = selectors.xref_write_csv(handle)
        except OSError as exc:
            raise CommandError(f"cannot write {options['path']}: {exc.strerror}") from exc
        self.stdout.write(json.dumps({"path": options["path"], "rows": rows}))
