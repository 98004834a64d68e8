from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction
from django.tasks import TaskResultStatus
from django.utils import timezone

from background.ledger import announce_due_jobs
from background.models import Job


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
        failed = Job.objects.filter(status=TaskResultStatus.FAILED)
        if task:
            failed = failed.filter(task_path=task)
        with transaction.atomic():
            count = failed.update(
                status=TaskResultStatus.READY,
                attempts=0,
                run_after=timezone.now(),
                finished_at=None,
            )
            if count:
                announce_due_jobs()
        self.stdout.write(f"Queued {count} failed job(s) again.")
