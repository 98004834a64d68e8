"""Waiting for ledger outcomes with a deadline, for the tests that run jobs."""

import asyncio
from collections.abc import Awaitable, Callable

from asgiref.sync import sync_to_async
from django.tasks import TaskResult, TaskResultStatus

from background.models import Job
from background.runner import JobRunner
from signup.models import User

FINISHED = (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED)


async def new_accounts(*emails: str) -> None:
    for email in emails:
        await sync_to_async(User.objects.create_user)(email)


async def job(job_id: str) -> Job:
    return await Job.objects.aget(id=job_id)


async def until(
    condition: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 5.0
) -> None:
    """Return once ``condition()`` holds; fail the test naming ``what`` after ``timeout`` s.

    A plain condition (a look at memory) is checked every 5 ms, an awaitable
    one (a query, on a database thread) every 10 ms: the waits add up over
    a run, and each costs half the interval on average.
    """
    try:
        async with asyncio.timeout(timeout):
            while True:
                holds = condition()
                if isinstance(holds, bool):
                    if holds:
                        return
                    await asyncio.sleep(0.005)
                elif await holds:
                    return
                else:
                    await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"not within {timeout}s: {what}") from None


async def finished(result: TaskResult, timeout: float = 5.0) -> None:
    """Wait until the job behind ``result`` is SUCCESSFUL or FAILED; ``result`` is refreshed."""

    async def done() -> bool:
        await result.arefresh()
        return result.is_finished

    await until(done, f"job {result.id} finished", timeout)


async def reaches(job_id: str, status: TaskResultStatus, timeout: float = 5.0) -> Job:
    """Wait until the ledger row ``job_id`` has ``status``; return it."""

    async def there() -> bool:
        return await Job.objects.filter(id=job_id, status=status).aexists()

    await until(there, f"job {job_id} {status}", timeout)
    return await job(job_id)


async def all_finished(count: int, timeout: float = 10.0) -> list[Job]:
    """Wait until the ledger holds ``count`` jobs and every one is SUCCESSFUL or FAILED."""

    async def settled() -> bool:
        statuses = [status async for status in Job.objects.values_list("status", flat=True)]
        return len(statuses) == count and all(status in FINISHED for status in statuses)

    await until(settled, f"{count} jobs finished", timeout)
    return [job async for job in Job.objects.order_by("enqueued_at")]


async def sweeps(runner: JobRunner, count: int, timeout: float = 5.0) -> None:
    """Wait until ``runner`` has swept the ledger at least ``count`` more times."""
    seen, swept = runner.last_sweep_at, 0

    def counted() -> bool:
        nonlocal seen, swept
        if runner.last_sweep_at != seen:
            seen, swept = runner.last_sweep_at, swept + 1
        return swept >= count

    await until(counted, f"{count} sweeps by {runner.worker_id}", timeout)
