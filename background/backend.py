"""The ``TASKS`` backend: every job is written to the ledger before anything runs it."""

from datetime import timedelta
from functools import partial
from typing import Any

from django.db import transaction
from django.tasks import Task, TaskResult, TaskResultStatus
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.exceptions import TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils import timezone
from django.utils.json import normalize_json

from asgi_project import metrics

from . import ledger
from . import runner as runner_module
from .models import Job
from .results import task_result_for
from .runner import RunnerConfig


class LedgerBackend(BaseTaskBackend):
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True
    # The job is a row in the caller's database, written in the caller's
    # transaction: callers may enqueue inside atomic() and get all or nothing.
    enqueues_in_transaction = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.runner_config = RunnerConfig.from_options(self.options)

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        self.validate_task(task)
        now = timezone.now()
        job = Job(
            task_path=task.module_path,
            args=normalize_json(list(args)),
            kwargs=normalize_json(dict(kwargs)),
            backend=self.alias,
            queue_name=task.queue_name,
            priority=task.priority,
            run_after=task.run_after or now,
            enqueued_at=now,
        )
        runner = runner_module.active_runner()
        # Fast path: a runner in this process with room claims the job in the
        # same INSERT and gets it from memory after commit, so a mail costs
        # no extra query. If the process dies first, the lease runs out and
        # any runner picks the job up from the ledger.
        if runner is not None and job.run_after <= now and runner.has_room():
            job.status = TaskResultStatus.RUNNING
            job.lease_owner = runner.worker_id
            job.lease_expires_at = now + timedelta(seconds=runner.config.lease_seconds)
            job.attempts = 1
            job.started_at = job.last_attempted_at = now
            ledger.insert_job(job)
            transaction.on_commit(partial(runner.hand_over, job), robust=True)
        else:
            ledger.insert_job(job)
            if job.run_after <= now:
                if runner is not None:
                    runner.note_backlog()  # Claim it as soon as a slot frees.
                if self.runner_config.wakeup:
                    # An idle runner in any process claims it now (PostgreSQL).
                    ledger.announce_due_jobs()

        # Counted once committed: a rolled-back signup queued nothing.
        transaction.on_commit(metrics.JOBS_ENQUEUED.labels(task.module_path).inc)
        result = task_result_for(job, task)
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        try:
            job = Job.objects.get(id=result_id)
        except (Job.DoesNotExist, ValueError):
            raise TaskResultDoesNotExist(result_id) from None
        return task_result_for(job)
