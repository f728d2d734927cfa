"""Start the web server and a Celery worker together (the embedded default's one command)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the development web server and a Celery worker (and beat) in one terminal."

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")
        parser.add_argument("--concurrency", type=int, default=2)
        parser.add_argument("--no-beat", action="store_true", help="Do not run the periodic-task scheduler.")

    def handle(self, *args, **options) -> None:  # noqa: ANN002, ANN003
        python = sys.executable
        worker_cmd = [
            python,
            "-m",
            "celery",
            "-A",
            "crmhub",
            "worker",
            "-l",
            "info",
            "--concurrency",
            str(options["concurrency"]),
            "-n",
            "crmhub-dev@%h",
        ]
        if not options["no_beat"]:
            worker_cmd.append("--beat")  # one process is enough for the embedded default
        web_cmd = [python, "manage.py", "runserver", options["addrport"], "--noreload"]
        processes = [subprocess.Popen(worker_cmd), subprocess.Popen(web_cmd)]
        host = options["addrport"]
        self.stdout.write(
            self.style.SUCCESS(f"\ncrmhub is running at http://{host}/  (API docs: http://{host}/api/v1/docs/)")
        )
        if not settings.PRODUCTION:
            logins = "admin, steward, sales, support, auditor"
            self.stdout.write(f"Demo logins (password {settings.CRMHUB_DEMO_PASSWORD}): {logins}")
        self.stdout.write("Press Ctrl+C to stop.\n")

        def stop(*_args) -> None:  # noqa: ANN002
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, lambda *a: stop())
        try:
            while all(p.poll() is None for p in processes):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            stop()
            deadline = time.monotonic() + 15
            for process in processes:
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
        crashed = [p for p in processes if p.returncode not in (0, -signal.SIGTERM, -signal.SIGINT)]
        if crashed:
            command = " ".join(crashed[0].args)
            self.stderr.write(f"stopped because a process exited with {crashed[0].returncode}: {command}")
            sys.exit(1)
