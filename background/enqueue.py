"""Queueing a task as part of the caller's database transaction, whatever the backend."""

from functools import partial
from typing import Any

from django.db import transaction
from django.tasks import Task


def enqueue_with_transaction(task: Task, *args: Any, **kwargs: Any) -> None:
    """Queue ``task`` so it runs only if the caller's transaction commits.

    Call it in the thread that holds the transaction. A backend that writes
    jobs in the caller's database (``enqueues_in_transaction``: the ledger,
    Django Q2's ORM broker) enqueues now: the job commits or rolls back with the caller's rows. Any
    other backend (a broker such as Celery's) is handed the job only after the
    commit: its worker must not look for rows that are not visible yet, nor
    run for a transaction that rolled back. A crash between that commit and
    the hand-over loses the job; only the ledger closes that gap.
    """
    if getattr(task.get_backend(), "enqueues_in_transaction", False):
        task.enqueue(*args, **kwargs)
    else:
        transaction.on_commit(partial(task.enqueue, *args, **kwargs))
