from typing import Any

from django.core.management.base import BaseCommand

from background import ledger


class Command(BaseCommand):
    help = (
        "Queue FAILED jobs again with a fresh set of attempts, e.g. after an SMTP "
        "outage that outlasted TASKS_MAX_ATTEMPTS. Their error history is kept."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--task", help="Only jobs of this task path, e.g. mailer.tasks.send_welcome_email."
        )

    def handle(self, *args: Any, task: str | None, **options: Any) -> None:
        count = ledger.requeue_failed_jobs(task)
        self.stdout.write(f"Queued {count} failed job(s) again.")
