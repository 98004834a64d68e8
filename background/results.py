"""Converting ledger rows to Django's ``TaskResult``."""

from django.tasks import Task, TaskResult
from django.tasks.base import TaskError
from django.utils.module_loading import import_string

from .models import Job


def load_task(task_path: str) -> Task:
    task = import_string(task_path)
    if not isinstance(task, Task):
        raise TypeError(f"{task_path!r} is not a task.")
    return task


def _as_queued(task: Task, job: Job) -> Task:
    """``task`` with the job's priority, queue and backend."""
    queued = (job.priority, job.queue_name, job.backend)
    if (task.priority, task.queue_name, task.backend) == queued:
        # Nearly always. Task.using() builds an equal Task and validates it
        # against a backend it instantiates anew in each job's context: that
        # was ~6 % of the server's CPU under signup load (py-spy).
        return task
    return task.using(priority=job.priority, queue_name=job.queue_name, backend=job.backend)


def task_result_for(job: Job, task: Task | None = None) -> TaskResult:
    task = task or load_task(job.task_path)
    result = TaskResult(
        task=_as_queued(task, job),
        id=job.id,
        status=job.status,
        enqueued_at=job.enqueued_at,
        started_at=job.started_at,
        last_attempted_at=job.last_attempted_at,
        finished_at=job.finished_at,
        args=job.args,
        kwargs=job.kwargs,
        backend=job.backend,
        errors=[
            TaskError(
                exception_class_path=error["exception_class_path"], traceback=error["traceback"]
            )
            for error in job.errors
        ],
        worker_ids=list(job.worker_ids),
    )
    object.__setattr__(result, "_return_value", job.return_value)
    return result
