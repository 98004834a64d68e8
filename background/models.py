import secrets

from django.db import models
from django.tasks import TaskResultStatus
from django.utils import timezone


def new_job_id() -> str:
    # 192 random bits as 32 URL-safe characters, from one read of the OS's
    # random source (get_random_string makes one read per character).
    return secrets.token_urlsafe(24)


class Job(models.Model):
    """One queued call of a task: the durable ledger the runner works from.

    A job is claimed by setting ``lease_owner`` and ``lease_expires_at``; a
    lease that runs out (its process died) makes the job claimable again.
    """

    id = models.CharField(primary_key=True, max_length=32, default=new_job_id, editable=False)
    task_path = models.CharField(max_length=255)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    backend = models.CharField(max_length=32)
    queue_name = models.CharField(max_length=32)
    priority = models.SmallIntegerField(default=0)

    status = models.CharField(
        max_length=10, choices=TaskResultStatus.choices, default=TaskResultStatus.READY
    )
    # When the job is due: enqueue time, a deferred run_after, or a retry's backoff.
    run_after = models.DateTimeField(default=timezone.now)
    enqueued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True)
    last_attempted_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)

    # Counted when a worker claims the job, so a job that kills its process
    # still uses up its attempts instead of looping forever.
    attempts = models.PositiveIntegerField(default=0)
    worker_ids = models.JSONField(default=list)
    errors = models.JSONField(default=list)
    return_value = models.JSONField(null=True)

    lease_owner = models.CharField(max_length=64, null=True)
    lease_expires_at = models.DateTimeField(null=True)

    class Meta:
        indexes = [
            # The order the runner claims due jobs in (ledger.claim_ready_jobs).
            models.Index(fields=["status", "-priority", "run_after"], name="job_next"),
            models.Index(fields=["status", "lease_expires_at"], name="job_lease"),
            models.Index(fields=["lease_owner"], name="job_owner"),
            # Retention deletes the oldest finished jobs (ledger.delete_finished_jobs).
            models.Index(fields=["finished_at"], name="job_finished"),
        ]

    def __str__(self) -> str:
        return f"{self.task_path} [{self.status}] {self.id}"
