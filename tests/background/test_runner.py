"""The in-process runner against the real ledger and a real SMTP server: hand-over,
restart, retries, drain, two runners, and the SMTP connection across its life."""

import time
from datetime import timedelta
from typing import Any

import pytest
from django.tasks import TaskResultStatus
from django.utils import timezone
from prometheus_client import REGISTRY

from asgi_project.logs import JobFields
from background.models import Job
from background.runner import active_runner
from mailer.tasks import send_welcome_email
from tests.support.jobs import all_finished, finished, job, new_accounts, reaches, sweeps, until
from tests.support.log_records import log_records
from tests.support.smtp_server import SMTPTestServer

pytestmark = pytest.mark.django_db(transaction=True)


async def test_job_handed_over_in_memory_is_sent(
    smtp_server: SMTPTestServer, start_runner: Any
) -> None:
    runner = await start_runner()
    await new_accounts("new@example.com")
    result = await send_welcome_email.aenqueue("new@example.com")
    # Claimed in the INSERT itself: started as it was queued (a sweep would
    # have started it later). Not its lease, which the job may be done with.
    queued = await job(result.id)
    assert queued.started_at == queued.enqueued_at

    mail = (await smtp_server.until(1))[0]
    assert mail.recipients == ["new@example.com"]
    assert mail.message["Message-ID"] == f"<{result.id}@example.com>"
    text = mail.message.get_body(("plain",))
    assert text is not None
    assert "/account/set-password/" in text.get_content()
    await finished(result)
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

    await finished(result)
    mail = (await smtp_server.until(1))[0]
    assert mail.message["Message-ID"] == f"<{result.id}@example.com>"
    assert smtp_server.data_commands == 3
    done = await job(result.id)
    assert done.status == TaskResultStatus.SUCCESSFUL
    assert done.attempts == 3
    assert [e["exception_class_path"] for e in done.errors] == [
        "mailer.transport.DeliveryError"
    ] * 2
    # Each retry warning says why the attempt failed, in the server's words.
    warnings = [r.getMessage() for r in caplog.records if "attempt" in r.getMessage()]
    assert len(warnings) == 2
    assert all("deferred (451 scripted answer); retrying at" in line for line in warnings)


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


COUNTERS = ("enqueued", "started", "retried", "failed", "succeeded")


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_every_job_line_says_which_job_and_attempt_and_why(
    smtp_server: SMTPTestServer, start_runner: Any
) -> None:
    smtp_server.script("451", "550")
    await new_accounts("twice@example.com")
    await start_runner()
    task = {"task": "mailer.tasks.send_welcome_email"}
    before = {name: counted(f"background_jobs_{name}_total", **task) for name in COUNTERS}
    # django.tasks does not propagate to the root (settings.LOGGING): listen to both.
    with (
        log_records("", JobFields()) as records,
        log_records("django.tasks", JobFields()) as task_records,
    ):
        result = await send_welcome_email.aenqueue("twice@example.com")
        await finished(result)
        # Django logs the failure once the outcome is written: a moment later.
        await until(lambda: len(task_records) >= 1, "Django's line for the failed task")
    assert result.status == TaskResultStatus.FAILED

    runner_lines = [r for r in records if r.name == "background.runner"]
    job_lines = sorted(runner_lines + task_records, key=lambda r: r.created)
    fields = [(r.name, r.job_id, r.task, r.attempt) for r in job_lines]  # type: ignore[attr-defined]
    assert fields == [
        ("background.runner", result.id, task["task"], 1),  # 451: retried.
        ("background.runner", result.id, task["task"], 2),  # 550: given up,
        ("django.tasks", result.id, task["task"], 2),  # which Django logs with the traceback.
    ]
    reasons = [r.reason for r in job_lines[:2]]  # type: ignore[attr-defined]
    assert reasons == [
        "DeliveryError: deferred (451 scripted answer)",
        "DeliveryError: rejected (550 scripted answer)",
    ]
    grew = {
        name: counted(f"background_jobs_{name}_total", **task) - before[name] for name in COUNTERS
    }
    assert grew == {"enqueued": 1, "started": 2, "retried": 1, "failed": 1, "succeeded": 0}


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


async def test_deferred_job_waits_for_run_after(
    smtp_server: SMTPTestServer, start_runner: Any
) -> None:
    await new_accounts("later@example.com")
    await start_runner()
    # SMTPTestServer stamps arrivals with time.monotonic(): run_after is taken
    # after this reading, so it falls at or after `not_before` on that clock.
    not_before = time.monotonic() + 0.05
    due = timezone.now() + timedelta(seconds=0.05)
    result = await send_welcome_email.using(run_after=due).aenqueue("later@example.com")
    assert (await job(result.id)).lease_owner is None  # Not handed over: not due yet.

    mail = (await smtp_server.until(1, timeout=5))[0]
    assert mail.arrived_at >= not_before
    assert (await job(result.id)).attempts == 1


async def test_drain_deadline_releases_unfinished_jobs_for_the_next_start(
    smtp_server: SMTPTestServer, start_runner: Any
) -> None:
    smtp_server.delay = 1.5
    emails = [f"slow{i}@example.com" for i in range(3)]
    await new_accounts(*emails)
    # No poll meanwhile: a sweep that began before the hand-overs claims with
    # the room it saw then, and could start the third job beside the first.
    runner = await start_runner(concurrency=1, poll_interval=600)
    await sweeps(runner, 1)  # The sweep at start.
    results = [await send_welcome_email.aenqueue(email) for email in emails]
    await until(lambda: smtp_server.data_commands == 1, "the first mail at the SMTP server")

    finished_count, left = await runner.stop(drain_timeout=0.05)
    # One cancelled at the server, one waiting in memory; the third was never
    # handed over (no room) and stayed in the ledger.
    assert (finished_count, left) == (0, 2)
    assert active_runner() is None
    jobs = [await job(result.id) for result in results]
    assert {j.status for j in jobs} == {TaskResultStatus.READY}
    assert {j.lease_owner for j in jobs} == {None}
    # The cancelled attempt counts; the two that never started do not.
    assert sorted(j.attempts for j in jobs) == [0, 0, 1]

    smtp_server.delay = 0
    await start_runner()
    jobs = await all_finished(3)
    assert {j.status for j in jobs} == {TaskResultStatus.SUCCESSFUL}
    assert sorted(smtp_server.recipients()) == sorted(emails)  # Each exactly once.


async def test_drain_waits_for_jobs_that_finish_in_time(
    smtp_server: SMTPTestServer, start_runner: Any
) -> None:
    smtp_server.delay = 0.1  # Still at the server when the drain starts.
    await new_accounts("drain@example.com")
    runner = await start_runner()
    result = await send_welcome_email.aenqueue("drain@example.com")
    await until(lambda: smtp_server.data_commands == 1, "the mail at the SMTP server")
    assert await runner.stop(drain_timeout=5) == (1, 0)
    assert (await job(result.id)).status == TaskResultStatus.SUCCESSFUL
    assert smtp_server.recipients() == ["drain@example.com"]


async def test_two_runners_share_the_jobs_and_never_send_one_twice(
    smtp_server: SMTPTestServer, start_runner: Any
) -> None:
    emails = [f"shared{i}@example.com" for i in range(12)]
    await new_accounts(*emails)
    for email in emails:
        await send_welcome_email.aenqueue(email)
    # The server holds the mails until 8 are at it together: one runner
    # sends at most 4 at a time (FAST), so both must have claimed jobs.
    smtp_server.hold()
    first = await start_runner()
    second = await start_runner()
    await until(lambda: smtp_server.data_commands >= 8, "8 mails at the server at once")
    smtp_server.release()
    jobs = await all_finished(12)
    assert {j.status for j in jobs} == {TaskResultStatus.SUCCESSFUL}
    assert sorted(smtp_server.recipients()) == sorted(emails)  # Each exactly once.
    assert smtp_server.data_commands == 12
    owners = [tuple(j.worker_ids) for j in jobs]
    assert set(owners) == {(first.worker_id,), (second.worker_id,)}


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


async def test_a_job_handed_over_after_its_lease_ran_out_is_sent_once(
    smtp_server: SMTPTestServer, start_runner: Any
) -> None:
    # A signup whose database thread was held up (a stalled database) commits
    # after its job's lease ran out: the sweeper claims that job as an orphan,
    # and the late hand-over must not run it a second time.
    smtp_server.delay = 0.1  # Both runs would be at the server together.
    await new_accounts("late@example.com")
    runner = await start_runner()
    expired = await Job.objects.acreate(
        task_path="mailer.tasks.send_welcome_email",
        args=["late@example.com"],
        backend="default",
        queue_name="default",
        status=TaskResultStatus.RUNNING,
        attempts=1,
        lease_owner=runner.worker_id,
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    runner.hand_over(expired)
    sent = await reaches(expired.id, TaskResultStatus.SUCCESSFUL)
    # A second run, had there been one, was at the server by now: wait until
    # the runner holds nothing more.
    await until(lambda: not runner._held_ids(), "the runner holds no job")
    assert smtp_server.recipients() == ["late@example.com"]
    assert sent.attempts == 2  # Claimed by the sweep, not run by the hand-over.
