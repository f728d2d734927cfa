"""``manage.py seed_demo``: the multi-channel demo data set and one demo user per role."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from crmhub.demo import SOURCES, demo_seed


class Command(BaseCommand):
    help = (
        "Create demo sources, customers (the same people in several sources, formatted the way each "
        "system does), interactions and one user per role. Safe to run again: existing demo data is "
        "left as it is and the demo users get their password reset. Refused in production."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--customers",
            type=int,
            default=300,
            help="people to generate (default 300); "
            "each is in 1-4 sources, so there are about 1.5 golden records per person",
        )
        parser.add_argument("--seed", type=int, default=7, help="random seed: the same seed gives the same people")

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PRODUCTION:
            raise CommandError(
                "seed_demo refuses to run with production settings (CRMHUB_ENV=production): "
                "it creates users with a published password."
            )
        if options["customers"] < 1:
            raise CommandError("--customers must be at least 1")
        result = demo_seed(customers=options["customers"], seed=options["seed"])
        self._summary(result)
        self.stdout.write(json.dumps(result, ensure_ascii=False))

    def _summary(self, result: dict[str, Any]) -> None:
        out = self.stdout
        if result["created"]:
            out.write(
                self.style.SUCCESS(
                    f"Demo data created in {result['seconds']} s: {result['people']} people, "
                    f"{result['multi_source_people']} of them in two or more sources."
                )
            )
        else:
            out.write(self.style.WARNING("The demo sources already hold records: data left as it is."))
        out.write(f"  sources:        {result['sources']} ({', '.join(code for code, *_ in SOURCES)})")
        out.write(f"  golden records: {result['customers']} (one per source record until dedup runs)")
        out.write(f"  source records: {result['source_records']}")
        out.write(f"  interactions:   {result['interactions']}")
        if result["vips"]:
            out.write(f"  VIPs (200+ interactions): {', '.join(result['vips'])}")
        out.write(f"Demo logins (password: {settings.CRMHUB_DEMO_PASSWORD}):")
        for user in result["users"]:
            out.write(f"  {user['username']:<8} role {user['role']}")
        out.write(f"API token of 'api': {result['api_token']}  (header: Authorization: Token {result['api_token']})")
