"""The ``TASKS`` backend that hands jobs to a Django Q2 cluster (``manage.py qcluster``).

No released ``django.tasks`` backend for Django Q2 exists (django-q2 1.11.1
has none; its pull request #315 for one is open), so this adapter is one:
``enqueue`` queues ``run_task`` with the task's path and arguments through
Django Q2's ``async_task``, and a cluster worker runs it like any Django Q2
job. Django Q2 keeps the results (``django_q.Task``), which ``get_result``
reads. Needs ``requirements-django-q2.txt`` and ``django_q`` in
``INSTALLED_APPS`` (``TASKS_BACKEND=django-q2`` adds it).

The job id is Django Q2's task id: the task's context carries it (the mail's
Message-ID comes from it), and a job Django Q2 runs again keeps it.
"""

from typing import Any

from django.core import checks
from django.db import DEFAULT_DB_ALIAS
from django.tasks import Task, TaskContext, TaskResult, TaskResultStatus
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import TaskError
from django.tasks.exceptions import TaskResultDoesNotExist
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.utils import timezone
from django.utils.json import normalize_json
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.models import Task as FinishedJob
from django_q.signals import pre_execute
from django_q.tasks import async_task

from .results import load_task

RUN_TASK = f"{__name__}.run_task"


class DjangoQ2Backend(BaseTaskBackend):
    supports_async_task = True
    supports_get_result = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        # The ORM broker writes the job as a row: in the service's own
        # database it commits or rolls back with the caller's transaction
        # (background/enqueue.py), and nothing is lost between the two.
        self.enqueues_in_transaction = Conf.ORM == DEFAULT_DB_ALIAS

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        # Only the ORM broker's queue is a table get_result() can read, and
        # only it needs no other service.
        if Conf.ORM and not (Conf.BROKER_CLASS or Conf.IRON_MQ or Conf.SQS):
            return []
        hint = 'Set Q_CLUSTER["orm"] to a database alias, and no other broker.'
        return [checks.Error("Django Q2 must use its ORM broker.", hint=hint, id="background.E001")]

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        self.validate_task(task)
        args, kwargs = normalize_json(list(args)), normalize_json(dict(kwargs))
        # Arguments as two values, not spread: a task's own keyword (say,
        # ``timeout``) must not be taken for one of Django Q2's options.
        job_id = async_task(RUN_TASK, task.module_path, args, kwargs, task_name=task.module_path)
        result = _result(task, job_id, TaskResultStatus.READY, args, kwargs)
        object.__setattr__(result, "enqueued_at", timezone.now())
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        job = FinishedJob.objects.filter(pk=result_id).first()
        if job is not None:
            return _finished_result(job)
        queued = self._queued(result_id)
        if queued is None:
            raise TaskResultDoesNotExist(result_id)
        path, args, kwargs = queued.args()
        # A cluster that took the job holds it until ``lock``.
        running = queued.lock is not None and queued.lock > timezone.now()
        status = TaskResultStatus.RUNNING if running else TaskResultStatus.READY
        result = _result(load_task(path), result_id, status, args, kwargs)
        object.__setattr__(result, "enqueued_at", queued.task.get("started"))
        return result

    def _queued(self, job_id: str) -> OrmQ | None:
        """The job in the broker's queue, if there: each row is decoded to find
        it, which is fine for an operator's look-up, not for a hot path."""
        for queued in OrmQ.objects.using(Conf.ORM).filter(key=Conf.CLUSTER_NAME).iterator():
            if queued.task_id() == job_id:
                return queued
        return None


def _result(
    task: Task, job_id: str, status: TaskResultStatus, args: list[Any], kwargs: dict[str, Any]
) -> TaskResult:
    return TaskResult(
        task=task,
        id=job_id,
        status=status,
        enqueued_at=None,
        started_at=None,
        last_attempted_at=None,
        finished_at=None,
        args=args,
        kwargs=kwargs,
        backend=task.backend,
        errors=[],
        worker_ids=[],
    )


def _finished_result(job: FinishedJob) -> TaskResult:
    """A job Django Q2 ran at least once: its outcome, or READY if it runs again."""
    path, args, kwargs = job.args
    task = load_task(path)
    if job.success:
        status = TaskResultStatus.SUCCESSFUL
    elif Conf.ACK_FAILURES or 0 < Conf.MAX_ATTEMPTS <= job.attempt_count:
        status = TaskResultStatus.FAILED
    else:
        status = TaskResultStatus.READY  # Django Q2 runs it again after ``retry`` seconds.
    result = _result(task, job.id, status, args, kwargs)
    for name, value in [
        ("enqueued_at", job.started),  # Django Q2's "started" is when it was queued.
        ("last_attempted_at", job.stopped),
        ("finished_at", job.stopped if status != TaskResultStatus.READY else None),
        ("_return_value", job.result if job.success else None),
    ]:
        object.__setattr__(result, name, value)
    if not job.success:
        result.errors.append(_error(str(job.result)))
    return result


def _error(stored: str) -> TaskError:
    """Django Q2 keeps an attempt's error as "<message> : <traceback>"; the
    traceback's last line starts with the exception's name."""
    name = stored.rstrip().rsplit("\n", 1)[-1].split(":", 1)[0].strip()
    return TaskError(
        exception_class_path=name if "." in name else f"builtins.{name}", traceback=stored
    )


# The id of the job a cluster worker is about to run. A worker process runs
# one job at a time and Django Q2 gives the function only its arguments, so
# its ``pre_execute`` signal, sent just before the call, tells ``run_task``.
_current_job_id = ""


def _note_job_id(sender: object, task: dict[str, Any], **kwargs: object) -> None:
    global _current_job_id
    _current_job_id = task["id"]


pre_execute.connect(_note_job_id, dispatch_uid=f"{__name__}.note_job_id")


def run_task(path: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """Run the Django task at ``path`` in a cluster worker; an exception fails the attempt."""
    task = load_task(path)
    result = _result(task, _current_job_id, TaskResultStatus.RUNNING, args, kwargs)
    now = timezone.now()
    object.__setattr__(result, "started_at", now)
    object.__setattr__(result, "last_attempted_at", now)
    task_started.send(DjangoQ2Backend, task_result=result)
    try:
        if task.takes_context:
            value = task.call(TaskContext(task_result=result), *args, **kwargs)
        else:
            value = task.call(*args, **kwargs)
    except BaseException:
        object.__setattr__(result, "status", TaskResultStatus.FAILED)
        object.__setattr__(result, "finished_at", timezone.now())
        task_finished.send(DjangoQ2Backend, task_result=result)
        raise
    value = normalize_json(value)  # What Django Q2 stores, and get_result() returns.
    object.__setattr__(result, "status", TaskResultStatus.SUCCESSFUL)
    object.__setattr__(result, "finished_at", timezone.now())
    object.__setattr__(result, "_return_value", value)
    task_finished.send(DjangoQ2Backend, task_result=result)
    return value
