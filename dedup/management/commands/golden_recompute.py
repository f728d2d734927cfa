"""``manage.py golden_recompute [--source CODE] [--customer ID ...]``: re-choose golden values
under the current survivorship rules (after an admin changed a rule) and print
``{"customers", "changed", "overrides_superseded", "seconds"}``.

Runs in this process: the work is set-based and chunked (one transaction per chunk), so a
rule change over many customers can also be applied source by source."""

from __future__ import annotations

import json
import time

from django.core.management.base import BaseCommand, CommandError

from crmhub.choices import ChangeChannel, CustomerStatus
from crmhub.context import change_context
from crmhub.models import Customer, Source, SourceRecord
from dedup.survivorship import golden_record_recompute


class Command(BaseCommand):
    help = "Recompute golden records from their linked source records under the survivorship rules."

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("--source", default="", help="Only customers with a record of this source.")
        parser.add_argument("--customer", type=int, action="append", default=[], help="Only this customer (repeat).")

    def handle(self, *args, **options) -> None:  # noqa: ANN002, ANN003
        started = time.monotonic()
        if options["customer"]:
            ids = options["customer"]
        elif options["source"]:
            if not Source.objects.filter(code=options["source"]).exists():
                raise CommandError(f"There is no source with code {options['source']!r}.")
            ids = list(
                SourceRecord.objects.filter(source__code=options["source"], customer__isnull=False)
                .values_list("customer_id", flat=True)
                .distinct()
            )
        else:
            ids = list(Customer.objects.filter(status=CustomerStatus.ACTIVE).values_list("pk", flat=True))
        with change_context(channel=ChangeChannel.COMMAND, ref="golden_recompute"):
            outcome = golden_record_recompute(ids)
        self.stdout.write(json.dumps({**outcome, "seconds": round(time.monotonic() - started, 2)}))
