from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand

from background.housekeeping import BATCH_SIZE, MAX_BATCHES, run_housekeeping


class Command(BaseCommand):
    help = (
        "Delete what retention allows now: finished jobs, accounts never confirmed, "
        "expired rate-limit windows. The job runner does this every few minutes; run "
        "this from cron only when jobs run elsewhere (another TASKS backend)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        deleted: Counter[str] = Counter()
        while True:
            counts = run_housekeeping()
            deleted.update(counts)
            # Each call is bounded; a kind that used its whole bound may have more.
            if max(counts.values(), default=0) < BATCH_SIZE * MAX_BATCHES:
                break
        summary = ", ".join(f"{n} {kind}" for kind, n in sorted(deleted.items()))
        self.stdout.write(f"Deleted {summary}.")
