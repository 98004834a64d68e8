"""The runner prunes the ledger by itself: nobody has to remember a cron job."""

from datetime import timedelta

import pytest
from django.tasks import TaskResultStatus
from django.utils import timezone

from background.models import Job
from background.runner import JobRunner, RunnerConfig
from tests.support.jobs import until

pytestmark = pytest.mark.django_db(transaction=True)


async def test_runner_deletes_expired_finished_jobs_on_its_own() -> None:
    long_ago = timezone.now() - timedelta(days=30)
    await Job.objects.acreate(
        id="expired", status=TaskResultStatus.SUCCESSFUL, finished_at=long_ago
    )
    await Job.objects.acreate(
        id="recent", status=TaskResultStatus.SUCCESSFUL, finished_at=timezone.now()
    )
    runner = JobRunner(RunnerConfig(poll_interval=0.05, housekeeping_interval=0.02))
    await runner.start()
    try:

        async def deleted() -> bool:
            return not await Job.objects.filter(id="expired").aexists()

        await until(deleted, "the expired job deleted", timeout=10)
    finally:
        await runner.stop(drain_timeout=1)
    assert [job.id async for job in Job.objects.all()] == ["recent"]
