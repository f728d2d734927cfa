"""``manage.py export_candidates PATH``: CSV ``left_source,left_key,right_source,right_key,score,status``."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from dedup import selectors


class Command(BaseCommand):
    help = "Export match candidates with one source key for each side."

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("path")
        parser.add_argument("--status", default="", help="Only candidates in this status.")
        parser.add_argument("--inline", action="store_true", help="Accepted for symmetry: exports always run here.")

    def handle(self, *args, **options) -> None:  # noqa: ANN002, ANN003
        try:
            with open(options["path"], "w", newline="", encoding="utf-8") as handle:
                rows = selectors.candidates_write_csv(handle, status=options["status"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        except OSError as exc:
            raise CommandError(f"cannot write {options['path']}: {exc.strerror}") from exc
        self.stdout.write(json.dumps({"path": options["path"], "rows": rows}))
