"""Job outcomes written in batches (``background/outcomes.py``), against the real ledger."""

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from django.tasks import TaskResultStatus

from asgi_project.logs import JobFields, job_log_context
from background import ledger, outcomes
from background.database import DatabaseUnavailable, runner_threads
from background.models import Job
from background.outcomes import OutcomeWriter
from mailer.tasks import send_welcome_email
from tests.support.jobs import all_finished, new_accounts, until
from tests.support.log_records import log_records
from tests.support.smtp_server import SMTPTestServer

pytestmark = pytest.mark.django_db(transaction=True)

WORKER = "worker-a"


async def claimed_jobs(count: int) -> list[Job]:
    for i in range(count):
        await send_welcome_email.aenqueue(f"outcome{i}@example.com")
    return await runner_threads.run(ledger.claim_ready_jobs, WORKER, count, 30)


def recording(batches: list[int], before: Callable[[], Any] | None = None) -> Any:
    """``runner_threads.run`` that notes each batch's size (and may wait or fail first)."""

    async def run_in_db(write_outcomes: Any, writes: list[Any]) -> list[bool]:
        batches.append(len(writes))
        if before is not None:
            await before()
        return await runner_threads.run(write_outcomes, writes)

    return run_in_db


async def test_outcomes_arriving_during_a_write_go_together_in_the_next_batch() -> None:
    first, *others = await claimed_jobs(6)
    gate = asyncio.Event()
    batches: list[int] = []

    async def first_batch_waits() -> None:
        if len(batches) == 1:
            await gate.wait()

    writer = OutcomeWriter(recording(batches, first_batch_waits))
    written = [asyncio.create_task(writer.write(ledger.record_success, first, WORKER, True))]
    await until(lambda: batches == [1], "the first outcome's batch being written")
    written += [
        asyncio.create_task(writer.write(ledger.record_success, job, WORKER, True))
        for job in others
    ]
    await asyncio.sleep(0)  # Tasks run in creation order: all five are now queued.
    gate.set()
    assert await asyncio.gather(*written) == [True] * 6
    assert batches == [1, 5]
    statuses = {job.status async for job in Job.objects.all()}
    assert statuses == {TaskResultStatus.SUCCESSFUL}


async def test_outcomes_soon_after_a_write_wait_out_the_interval_and_go_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outcomes, "MIN_FLUSH_INTERVAL", 0.5)  # Outlasts the test's steps.
    first, second, third = await claimed_jobs(3)
    batches: list[int] = []
    writer = OutcomeWriter(recording(batches))
    assert await writer.write(ledger.record_success, first, WORKER, True)  # At once.
    waiting = asyncio.create_task(writer.write(ledger.record_success, second, WORKER, True))
    await asyncio.sleep(0.01)
    assert batches == [1]  # The second waits out the interval...
    assert await writer.write(ledger.record_success, third, WORKER, True)
    assert await waiting
    assert batches == [1, 2]  # ...and the third joins it in one transaction.


async def test_a_batch_the_database_refused_is_retried_until_written(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(outcomes, "RETRY_PAUSES", (0.01,))
    jobs = await claimed_jobs(2)
    batches: list[int] = []

    async def database_away_twice() -> None:
        if len(batches) <= 2:
            raise DatabaseUnavailable("connection refused")

    writer = OutcomeWriter(recording(batches, database_away_twice))
    results = await asyncio.gather(
        *(writer.write(ledger.record_success, job, WORKER, True) for job in jobs)
    )
    assert results == [True, True]
    assert batches == [2, 2, 2]
    assert {job.status async for job in Job.objects.all()} == {TaskResultStatus.SUCCESSFUL}
    messages = [record.getMessage() for record in caplog.records]
    assert sum("Could not write 2 job outcome(s)" in m for m in messages) == 1
    assert "Job outcomes written again after 2 failed tries" in messages


async def test_the_writer_does_not_log_as_the_job_whose_outcome_started_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # It writes the outcomes of every job that finishes meanwhile: a line
    # about the batch must not carry the first job's id.
    monkeypatch.setattr(outcomes, "RETRY_PAUSES", (0.01,))
    [job] = await claimed_jobs(1)
    batches: list[int] = []

    async def database_away_once() -> None:
        if len(batches) == 1:
            raise DatabaseUnavailable("connection refused")

    writer = OutcomeWriter(recording(batches, database_away_once))
    context = job_log_context(job_id=job.id, task=job.task_path, attempt=1)
    write = writer.write(ledger.record_success, job, WORKER, True)
    with log_records("background.outcomes", JobFields()) as records:
        assert await asyncio.create_task(write, context=context)  # As the runner runs a job.
    [failure, recovery] = records
    assert failure.getMessage().startswith("Could not write 1 job outcome(s)")
    assert failure.reason == "DatabaseUnavailable: connection refused"  # type: ignore[attr-defined]
    assert not hasattr(failure, "job_id") and not hasattr(recovery, "job_id")


async def test_closing_the_writer_leaves_unwritten_outcomes_to_the_leases(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outcomes, "RETRY_PAUSES", (0.01,))
    [job] = await claimed_jobs(1)

    async def database_away() -> None:
        raise DatabaseUnavailable("connection refused")

    batches: list[int] = []
    writer = OutcomeWriter(recording(batches, database_away))
    pending = asyncio.create_task(writer.write(ledger.record_success, job, WORKER, True))
    await until(lambda: len(batches) >= 2, "the write tried again")
    await writer.close()
    with pytest.raises(asyncio.CancelledError):
        await pending
    stored = await Job.objects.aget()
    assert (stored.status, stored.lease_owner) == (TaskResultStatus.RUNNING, WORKER)


async def test_many_jobs_finishing_together_are_all_recorded(
    smtp_server: SMTPTestServer, start_runner: Any
) -> None:
    # Outcomes are written in batches: every job of a burst must end SUCCESSFUL once.
    emails = [f"burst{i}@example.com" for i in range(30)]
    await new_accounts(*emails)
    for email in emails:
        await send_welcome_email.aenqueue(email)
    runner = await start_runner(concurrency=16)
    jobs = await all_finished(30)
    assert {j.status for j in jobs} == {TaskResultStatus.SUCCESSFUL}
    assert {tuple(j.worker_ids) for j in jobs} == {(runner.worker_id,)}
    assert sorted(smtp_server.recipients()) == sorted(emails)
