"""python manage.py import_file PATH --source CODE [--template NAME | --auto-map] [--key COLUMN] [--dry-run]

Waits for the run and prints its summary as one JSON object on the last line:
{"run": id, "status": ..., "rows": n, "created": n, "updated": n, "unchanged": n, "invalid": n, "errors": n}
"""

from __future__ import annotations

import json
import sys

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from crmhub.jobs import NoWorkerError, wait_for_worker, wait_until
from crmhub.services import source_get_or_create
from imports.choices import RunStatus
from imports.models import ImportRun
from imports.services import ImportRefused, file_run_from_path, import_run_execute, plan_resolve


class Command(BaseCommand):
    help = "Import a CSV/TSV/XLSX/XLS file of customer records into a source."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path")
        parser.add_argument("--source", required=True, help="source code; created on first use")
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--template", default="", help="a mapping template saved for the source")
        group.add_argument("--auto-map", action="store_true", help="map headers to the data dictionary automatically")
        parser.add_argument("--key", default="", help="the source-key column (comma-separated for several)")
        parser.add_argument("--dry-run", action="store_true", help="count and sample what would change; write nothing")
        parser.add_argument("--inline", action="store_true", help="run in this process instead of a Celery worker")
        parser.add_argument("--sheet", default=None, help="workbook sheet (default: the first)")
        parser.add_argument("--header-row", type=int, default=None, help="1-based header row (default: detected)")
        parser.add_argument("--dayfirst", action="store_true", help="read 05-01-2024 as 5 January")
        parser.add_argument("--user", default="", help="attribute the run to this username")

    def handle(self, *args, **options) -> None:  # noqa: ANN002, ANN003
        user = None
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"No user {options['user']!r}.")
        if not options["inline"]:
            try:
                wait_for_worker()
            except NoWorkerError as exc:
                raise CommandError(str(exc)) from exc
        source, _created = source_get_or_create(code=options["source"])
        keys = [k.strip() for k in options["key"].split(",") if k.strip()]

        def plan_for(layout):  # noqa: ANN001, ANN202
            plan = plan_resolve(
                source=source,
                layout=layout,
                template_name=options["template"],
                auto_map=options["auto_map"],
                key_columns=keys,
            )
            plan.dayfirst = plan.dayfirst or options["dayfirst"]
            return plan

        header_row = options["header_row"] - 1 if options["header_row"] else None
        try:
            run = file_run_from_path(
                path=options["path"],
                source=source,
                plan_for=plan_for,
                user=user,
                dry_run=options["dry_run"],
                enqueue=not options["inline"],
                sheet=options["sheet"],
                header_row=header_row,
            )
        except ImportRefused as exc:
            raise CommandError(str(exc)) from exc
        except FileNotFoundError as exc:
            raise CommandError(f"No such file: {options['path']}") from exc
        if options["inline"]:
            import_run_execute(run_id=run.pk)
        else:
            last = [-1]

            def progress(r: ImportRun) -> None:
                if r.rows_done != last[0]:
                    last[0] = r.rows_done
                    self.stderr.write(f"run {r.pk}: {r.status} {r.rows_done}/{r.rows_total or '?'} rows")

            try:
                wait_until(lambda: ImportRun.objects.get(pk=run.pk), lambda r: r.is_terminal, on_progress=progress)
            except NoWorkerError as exc:
                raise CommandError(f"{exc} Run #{run.pk} stays queued.") from exc
        run.refresh_from_db()
        if run.message:
            self.stderr.write(run.message)
        self.stdout.write(json.dumps(run.summary()))
        if run.status in (RunStatus.FAILED, RunStatus.CANCELLED):
            sys.exit(1)
