"""``manage.py dedup_run [--rule NAME] [--source CODE] [--inline [--processes N]]``: run duplicate detection
and print ``{"run", "records", "candidates", "auto_merged", "for_review", "seconds"}``."""

from __future__ import annotations

import json
import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from crmhub.choices import ChangeChannel
from crmhub.context import change_context
from crmhub.jobs import NoWorkerError, wait_for_worker, wait_until
from dedup import services
from dedup.choices import RunStatus
from dedup.models import DedupRun


class Command(BaseCommand):
    help = "Find duplicate customers: link the certain ones, queue the likely ones for review."

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("--rule", default=None, help="Match rule name (default: the default rule).")
        parser.add_argument("--source", default="", help="Only pairs involving records of this source.")
        parser.add_argument("--inline", action="store_true", help="Run in this process instead of on a worker.")
        parser.add_argument(
            "--processes",
            type=int,
            default=1,
            help="With --inline: merge the clusters' chunks in this many processes (PostgreSQL).",
        )

    def handle(self, *args, **options) -> None:  # noqa: ANN002, ANN003
        try:
            if not options["inline"]:
                wait_for_worker()
            with transaction.atomic():
                run = services.dedup_run_create(rule_name=options["rule"], source_code=options["source"])
                if not options["inline"]:
                    from dedup.tasks import dedup_run_start

                    transaction.on_commit(lambda: dedup_run_start.delay(run.pk))
            if options["inline"]:
                with change_context(channel=ChangeChannel.COMMAND, ref=f"dedup_run:{run.pk}"):
                    run = services.dedup_run_execute_inline(run=run, processes=options["processes"])
            else:
                run = wait_until(
                    lambda: DedupRun.objects.get(pk=run.pk),
                    lambda r: r.status in RunStatus.terminal(),
                    on_progress=self._progress,
                )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        except NoWorkerError as exc:
            raise CommandError(str(exc)) from exc
        if run.status == RunStatus.FAILED:
            self.stdout.write(json.dumps({**services.dedup_run_summary(run), "status": run.status, "error": run.error}))
            raise CommandError(f"dedup run {run.pk} failed: {run.error}")
        self.stdout.write(json.dumps(services.dedup_run_summary(run)))

    def _progress(self, run: DedupRun) -> None:
        if sys.stderr.isatty():
            sys.stderr.write(f"\rrun {run.pk}: {run.status} {run.parts_done}/{run.parts_total} parts")
