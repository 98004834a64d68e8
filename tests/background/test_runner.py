"""The in-process runner against the real ledger and a real SMTP server."""

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.tasks import TaskResult, TaskResultStatus
from django.utils import timezone

from background import ledger
from background.models import Job
from background.retry import backoff_delay
from background.runner import JobRunner, RunnerConfig, active_runner
from mailer.tasks import send_welcome_email
from signup.models import User
from tests.support.smtp_server import SMTPTestServer

pytestmark = pytest.mark.django_db(transaction=True)

FAST = RunnerConfig(
    concurrency=4,
    poll_interval=0.05,
    retry_base_delay=0.05,
    retry_max_delay=0.2,
    lease_seconds=30,
    drain_timeout=5,
)


@pytest.fixture
async def start_runner() -> AsyncIterator[Callable[..., Any]]:
    started: list[JobRunner] = []

    async def start(**changes: Any) -> JobRunner:
        config = RunnerConfig(**{**FAST.__dict__, **changes})
        runner = JobRunner(config)
        await runner.start()
        started.append(runner)
        return runner

    yield start
    for runner in started:
        if runner._accepting:
            await runner.stop(drain_timeout=1)


async def new_accounts(*emails: str) -> None:
    for email in emails:
        await sync_to_async(User.objects.create_user)(email)


async def job(job_id: str) -> Job:
    return await Job.objects.aget(id=job_id)


async def finished(result: TaskResult, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not result.is_finished:
            await asyncio.sleep(0.05)
            await result.arefresh()


async def test_job_handed_over_in_memory_is_sent(
    smtp_server: SMTPTestServer, start_runner: Any
) -> None:
    runner = await start_runner()
    await new_accounts("new@example.com")
    result = await send_welcome_email.aenqueue("new@example.com")
    queued = await job(result.id)
    assert queued.lease_owner == runner.worker_id  # Claimed in the INSERT itself.

    mail = (await smtp_server.until(1))[0]
    assert mail.recipients == ["new@example.com"]
    assert mail.message["Message-ID"] == f"<{result.id}@example.com>"
    text = mail.message.get_body(("plain",))
    assert text is not None
    assert "/account/set-password/" in text.get_content()
    await asyncio.sleep(0.2)
    await result.arefresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value is True
    assert result.worker_ids == [runner.worker_id]


async def test_jobs_left_in_the_ledger_run_after_a_restart(
    smtp_server: SMTPTestServer, start_runner: Any
) -> None:
    emails = [f"left{i}@example.com" for i in range(5)]
    await new_accounts(*emails)
    for email in emails:
        await send_welcome_email.aenqueue(email)  # No runner yet: they wait in the ledger.
    assert await Job.objects.filter(status=TaskResultStatus.READY).acount() == 5

    await start_runner()
    await smtp_server.until(5)
    assert sorted(smtp_server.recipients()) == sorted(emails)


async def test_transient_failures_are_retried_with_growing_backoff(
    smtp_server: SMTPTestServer, start_runner: Any, caplog: pytest.LogCaptureFixture
) -> None:
    smtp_server.script("451", "451")
    await new_accounts("retry@example.com")
    await start_runner()
    result = await send_welcome_email.aenqueue("retry@example.com")

    mail = (await smtp_server.until(1))[0]
    assert mail.message["Message-ID"] == f"<{result.id}@example.com>"
    assert smtp_server.data_commands == 3
    await asyncio.sleep(0.2)
    finished = await job(result.id)
    assert finished.status == TaskResultStatus.SUCCESSFUL
    assert finished.attempts == 3
    assert [e["exception_class_path"] for e in finished.errors] == [
        "mailer.transport.DeliveryError"
    ] * 2
    # Each retry warning says why the attempt failed, in the server's words.
    warnings = [r.getMessage() for r in caplog.records if "attempt" in r.getMessage()]
    assert len(warnings) == 2
    assert all("deferred (451 scripted answer); retrying at" in line for line in warnings)


def test_backoff_grows_exponentially_up_to_its_cap() -> None:
    ceilings = [max(backoff_delay(n, base=1, cap=60) for _ in range(200)) for n in (1, 3, 5, 9)]
    assert ceilings[0] <= 1 < ceilings[1] <= 4 < ceilings[2] <= 16 < ceilings[3] <= 60
    assert all(backoff_delay(n, base=1, cap=60) >= 0.5 for n in range(1, 10))


async def test_permanent_failure_fails_the_job_at_once(
    smtp_server: SMTPTestServer, start_runner: Any
) -> None:
    smtp_server.script("550")
    await new_accounts("bounce@example.com")
    await start_runner()
    result = await send_welcome_email.aenqueue("bounce@example.com")

    await finished(result)
    assert result.status == TaskResultStatus.FAILED
    assert result.attempts == 1
    assert "550" in result.errors[0].traceback
    assert smtp_server.received == []
    with pytest.raises(ValueError, match="failed"):
        _ = result.return_value


async def test_attempts_run_out_after_max_attempts(
    smtp_server: SMTPTestServer, start_runner: Any
) -> None:
    smtp_server.script("451", "451", "451")
    await new_accounts("down@example.com")
    await start_runner(max_attempts=2)
    result = await send_welcome_email.aenqueue("down@example.com")
    await finished(result)
    assert result.status == TaskResultStatus.FAILED
    assert len(result.errors) == 2
    assert smtp_server.data_commands == 2


async def test_expired_lease_is_taken_over_and_live_lease_is_not(
    smtp_server: SMTPTestServer, start_runner: Any
) -> None:
    await new_accounts("orphan@example.com", "busy@example.com")
    now = timezone.now()
    common = {
        "task_path": "mailer.tasks.send_welcome_email",
        "backend": "default",
        "queue_name": "default",
        "status": TaskResultStatus.RUNNING,
        "attempts": 1,
    }
    orphan = await Job.objects.acreate(
        args=["orphan@example.com"],
        lease_owner="dead-host:1:x",
        lease_expires_at=now - timedelta(seconds=1),
        **common,
    )
    busy = await Job.objects.acreate(
        args=["busy@example.com"],
        lease_owner="live-host:1:x",
        lease_expires_at=now + timedelta(minutes=5),
        **common,
    )
    runner = await start_runner()
    await smtp_server.until(1)
    await asyncio.sleep(0.3)  # Several polls: the live lease must stay untouched.
    assert smtp_server.recipients() == ["orphan@example.com"]
    taken_over = await job(orphan.id)
    assert taken_over.status == TaskResultStatus.SUCCESSFUL
    assert taken_over.attempts == 2
    assert taken_over.worker_ids == [runner.worker_id]
    untouched = await job(busy.id)
    assert untouched.status == TaskResultStatus.RUNNING
    assert untouched.lease_owner == "live-host:1:x"


async def test_deferred_job_waits_for_run_after(
    smtp_server: SMTPTestServer, start_runner: Any
) -> None:
    await new_accounts("later@example.com")
    await start_runner()
    due = timezone.now() + timedelta(seconds=0.6)
    result = await send_welcome_email.using(run_after=due).aenqueue("later@example.com")
    assert (await job(result.id)).lease_owner is None  # Not handed over: not due yet.
    await asyncio.sleep(0.3)
    assert smtp_server.received == []
    await smtp_server.until(1, timeout=5)
    assert timezone.now() >= due


async def test_drain_deadline_releases_unfinished_jobs_for_the_next_start(
    smtp_server: SMTPTestServer, start_runner: Any
) -> None:
    smtp_server.delay = 1.5
    emails = [f"slow{i}@example.com" for i in range(3)]
    await new_accounts(*emails)
    runner = await start_runner(concurrency=1)
    results = [await send_welcome_email.aenqueue(email) for email in emails]
    await asyncio.sleep(0.3)  # The first is at the SMTP server, the others wait.

    finished, left = await runner.stop(drain_timeout=0.2)
    # One cancelled at the server, one waiting in memory; the third was never
    # handed over (no room) and stayed in the ledger.
    assert (finished, left) == (0, 2)
    assert active_runner() is None
    jobs = [await job(result.id) for result in results]
    assert {j.status for j in jobs} == {TaskResultStatus.READY}
    assert {j.lease_owner for j in jobs} == {None}
    # The cancelled attempt counts; the two that never started do not.
    assert sorted(j.attempts for j in jobs) == [0, 0, 1]

    smtp_server.delay = 0
    await start_runner()
    await smtp_server.until(3)
    await asyncio.sleep(0.3)
    assert sorted(smtp_server.recipients()) == sorted(emails)  # Each exactly once.


async def test_drain_waits_for_jobs_that_finish_in_time(
    smtp_server: SMTPTestServer, start_runner: Any
) -> None:
    smtp_server.delay = 0.3
    await new_accounts("drain@example.com")
    runner = await start_runner()
    result = await send_welcome_email.aenqueue("drain@example.com")
    await asyncio.sleep(0.1)
    assert await runner.stop(drain_timeout=5) == (1, 0)
    assert (await job(result.id)).status == TaskResultStatus.SUCCESSFUL
    assert smtp_server.recipients() == ["drain@example.com"]


async def test_two_runners_never_send_the_same_job(
    smtp_server: SMTPTestServer, start_runner: Any
) -> None:
    emails = [f"shared{i}@example.com" for i in range(30)]
    await new_accounts(*emails)
    for email in emails:
        await send_welcome_email.aenqueue(email)
    first = await start_runner()
    second = await start_runner()
    await smtp_server.until(30)
    await asyncio.sleep(0.3)
    assert sorted(smtp_server.recipients()) == sorted(emails)
    owners = {tuple(j.worker_ids) async for j in Job.objects.all()}
    assert owners <= {(first.worker_id,), (second.worker_id,)}


async def test_failed_jobs_can_be_queued_again_after_an_outage(
    smtp_server: SMTPTestServer, start_runner: Any
) -> None:
    smtp_server.script("550")
    await new_accounts("again@example.com")
    await start_runner()
    result = await send_welcome_email.aenqueue("again@example.com")
    await finished(result)
    assert result.status == TaskResultStatus.FAILED

    output = StringIO()
    await sync_to_async(call_command)("requeue_failed_jobs", stdout=output)
    assert output.getvalue().strip() == "Queued 1 failed job(s) again."
    mail = (await smtp_server.until(1))[0]
    assert mail.message["Message-ID"] == f"<{result.id}@example.com>"
    await asyncio.sleep(0.2)
    again = await job(result.id)
    assert again.status == TaskResultStatus.SUCCESSFUL
    assert len(again.errors) == 1  # The history of the failed attempt is kept.


async def test_many_jobs_finishing_together_are_all_recorded(
    smtp_server: SMTPTestServer, start_runner: Any
) -> None:
    # Outcomes are written in batches: every job of a burst must end SUCCESSFUL once.
    emails = [f"burst{i}@example.com" for i in range(30)]
    await new_accounts(*emails)
    results = [await send_welcome_email.aenqueue(email) for email in emails]
    runner = await start_runner(concurrency=16)
    for result in results:
        await finished(result)
    jobs = [await job(result.id) for result in results]
    assert {j.status for j in jobs} == {TaskResultStatus.SUCCESSFUL}
    assert {tuple(j.worker_ids) for j in jobs} == {(runner.worker_id,)}
    assert sorted(smtp_server.recipients()) == sorted(emails)


def test_a_batch_of_outcomes_that_rolls_back_changes_nothing() -> None:
    class Broken(Exception):
        pass

    def broken_write() -> bool:
        raise Broken

    User.objects.create_user("batch@example.com")
    send_welcome_email.enqueue("batch@example.com")
    [claimed] = ledger.claim_ready_jobs("worker-a", 1, 30)
    with pytest.raises(Broken):
        ledger.write_outcomes(
            [(ledger.record_success, (claimed, "worker-a", True)), (broken_write, ())]
        )
    assert (claimed.status, claimed.worker_ids) == (TaskResultStatus.RUNNING, [])
    assert Job.objects.get().status == TaskResultStatus.RUNNING

    assert ledger.write_outcomes([(ledger.record_success, (claimed, "worker-a", True))]) == [True]
    stored = Job.objects.get()
    assert (stored.status, stored.worker_ids) == (TaskResultStatus.SUCCESSFUL, ["worker-a"])
    assert (claimed.status, claimed.worker_ids) == (TaskResultStatus.SUCCESSFUL, ["worker-a"])


async def test_the_runner_keeps_its_smtp_connection_until_it_stops(
    smtp_server: SMTPTestServer, start_runner: Any
) -> None:
    emails = [f"pooled{i}@example.com" for i in range(3)]
    await new_accounts(*emails)
    runner = await start_runner(concurrency=1)
    for email in emails:
        await finished(await send_welcome_email.aenqueue(email))
    assert len(smtp_server.recipients()) == 3
    assert smtp_server.quits == 0  # One connection, kept for the next mail.
    await runner.stop()
    assert smtp_server.quits == 1


def test_a_task_run_by_a_sync_worker_closes_its_smtp_connection(
    smtp_server: SMTPTestServer, settings: Any
) -> None:
    # db_worker or a Celery worker runs each async task on a loop of its own,
    # which is gone after the task: a connection kept there would leak.
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}
    emails = [f"worker{i}@example.com" for i in range(3)]
    for email in emails:
        User.objects.create_user(email)
        send_welcome_email.enqueue(email)
    assert sorted(smtp_server.recipients()) == sorted(emails)
    assert smtp_server.quits == 3
