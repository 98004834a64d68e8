"""Lets django-vtasks run the product's tasks, which take a ``TaskContext``.

django-vtasks 3.2.0's worker calls a task's function with the job's arguments
only, although ``@task(takes_context=True)`` promises the context as the first
argument, so ``send_welcome_email`` fails there with a TypeError. For the
benchmark only, each such task's function is wrapped to pass a context whose
result carries a fresh id (the id becomes the Message-ID) and no enqueue
time (the mail tasks read nothing else from it). A user moving to django-vtasks would need the same,
or tasks without ``takes_context``.
"""

import functools
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from django.tasks import Task, TaskContext

from mailer import tasks


def _with_context(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    async def call(*args: Any, **kwargs: Any) -> Any:
        result = SimpleNamespace(id=uuid.uuid4().hex, enqueued_at=None)
        context = TaskContext(task_result=result)  # type: ignore[arg-type]
        return await func(context, *args, **kwargs)

    return call


def install() -> None:
    for value in vars(tasks).values():
        if isinstance(value, Task) and value.takes_context:
            object.__setattr__(value, "func", _with_context(value.func))
