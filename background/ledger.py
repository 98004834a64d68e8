"""Every read and write the runner makes to the job ledger.

Plain synchronous ORM code: the runner calls it through ``sync_to_async``.
Each write that ends an attempt is conditional on still holding the lease, so
a worker that lost its lease (it stalled, another took the job over) cannot
overwrite the newer owner's outcome.
"""

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Count, F, Q
from django.db.models.functions import Coalesce
from django.tasks import TaskResultStatus
from django.utils import timezone

from .models import Job

READY = TaskResultStatus.READY
RUNNING = TaskResultStatus.RUNNING
SUCCESSFUL = TaskResultStatus.SUCCESSFUL
FAILED = TaskResultStatus.FAILED


def _claimable(now: datetime) -> Q:
    due = Q(status=READY, run_after__lte=now)
    orphaned = Q(status=RUNNING, lease_expires_at__lt=now)
    return due | orphaned


def claim_ready_jobs(worker_id: str, limit: int, lease_seconds: float) -> list[Job]:
    """Atomically take up to ``limit`` due jobs (and orphaned ones) for ``worker_id``.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED`` lets workers claim side by side.
    SQLite: the transaction is IMMEDIATE, so it holds the write lock from
    BEGIN; the UPDATE repeats the condition so it stays correct even without.
    """
    now = timezone.now()
    lease_until = now + timedelta(seconds=lease_seconds)
    with transaction.atomic():
        candidates = (
            Job.objects.select_for_update(skip_locked=True)
            .filter(_claimable(now))
            .order_by("-priority", "run_after")
            .values_list("id", flat=True)[:limit]
        )
        ids = list(candidates)
        if not ids:
            return []
        Job.objects.filter(_claimable(now), id__in=ids).update(
            status=RUNNING,
            lease_owner=worker_id,
            lease_expires_at=lease_until,
            attempts=F("attempts") + 1,
            started_at=Coalesce("started_at", now),
            last_attempted_at=now,
        )
        return list(
            Job.objects.filter(id__in=ids, lease_owner=worker_id, lease_expires_at=lease_until)
        )


def _finish_attempt(job: Job, worker_id: str, **outcome: Any) -> bool:
    """Write the attempt's outcome, also onto ``job`` itself; False if the lease was lost.

    ``job`` changes only once the write has committed: a batch that rolls back
    is retried from the same state.
    """
    outcome |= {
        "worker_ids": [*job.worker_ids, worker_id],
        "lease_owner": None,
        "lease_expires_at": None,
    }
    updated = Job.objects.filter(id=job.id, lease_owner=worker_id).update(**outcome)

    def apply() -> None:
        for name, value in outcome.items():
            setattr(job, name, value)

    transaction.on_commit(apply)
    return updated == 1


def record_success(job: Job, worker_id: str, return_value: Any) -> bool:
    return _finish_attempt(
        job,
        worker_id,
        status=SUCCESSFUL,
        finished_at=timezone.now(),
        return_value=return_value,
    )


def record_failure(
    job: Job, worker_id: str, error: dict[str, str], retry_at: datetime | None
) -> bool:
    """Record the error; schedule the job again at ``retry_at`` or end it as FAILED."""
    errors = [*job.errors, error]
    if retry_at is not None:
        return _finish_attempt(job, worker_id, status=READY, run_after=retry_at, errors=errors)
    return _finish_attempt(job, worker_id, status=FAILED, finished_at=timezone.now(), errors=errors)


def write_outcomes(writes: list[tuple[Callable[..., bool], tuple[Any, ...]]]) -> list[bool]:
    """Run several outcome writes (``record_success``, ...) in one transaction."""
    with transaction.atomic():
        return [write(*args) for write, args in writes]


def release_jobs(worker_id: str, job_ids: list[str], *, started: bool) -> int:
    """Give jobs back so the next start, or another process, runs them at once.

    Jobs that never started get their claim back from the attempt count.
    """
    if not job_ids:
        return 0
    changes: dict[str, Any] = {}
    if not started:
        changes["attempts"] = F("attempts") - 1
    return Job.objects.filter(id__in=job_ids, lease_owner=worker_id).update(
        status=READY,
        run_after=timezone.now(),
        lease_owner=None,
        lease_expires_at=None,
        **changes,
    )


def renew_leases(worker_id: str, lease_seconds: float) -> int:
    """Extend the lease on every job this worker still holds (its heartbeat)."""
    return Job.objects.filter(lease_owner=worker_id, status=RUNNING).update(
        lease_expires_at=timezone.now() + timedelta(seconds=lease_seconds)
    )


def count_jobs_by_status() -> dict[str, int]:
    counts = {status.value: 0 for status in TaskResultStatus}
    for row in Job.objects.values("status").annotate(n=Count("id")).order_by():
        counts[row["status"]] = row["n"]
    return counts


def check_ledger() -> None:
    """Raise if the ledger table cannot be read (database down, not migrated)."""
    Job.objects.exists()
