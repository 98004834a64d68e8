"""The ``TASKS`` backend (``background/backend.py``): every job is a ledger row first."""

from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction
from django.tasks import TaskResultStatus
from django.tasks.exceptions import TaskResultDoesNotExist
from django.utils import timezone

from background.models import Job
from mailer.tasks import send_welcome_email
from tests.support.jobs import new_accounts, sweeps, until
from tests.support.smtp_server import SMTPTestServer

pytestmark = pytest.mark.django_db(transaction=True)


class Abort(Exception):
    pass


def enqueue_then_roll_back(email: str) -> None:
    with transaction.atomic():
        send_welcome_email.enqueue(email)
        raise Abort


def test_enqueue_writes_the_job_in_the_callers_transaction() -> None:
    with pytest.raises(Abort):
        enqueue_then_roll_back("gone@example.com")
    assert not Job.objects.exists()

    with transaction.atomic():
        result = send_welcome_email.using(priority=5).enqueue("kept@example.com")
    stored = Job.objects.get()
    assert stored.id == result.id
    assert (stored.task_path, stored.args, stored.kwargs) == (
        "mailer.tasks.send_welcome_email",
        ["kept@example.com"],
        {},
    )
    assert (stored.status, stored.priority, stored.lease_owner) == (
        TaskResultStatus.READY,
        5,
        None,
    )
    assert stored.run_after == stored.enqueued_at
    # Read back, the result's task carries the job's priority, not the task's default.
    assert result.task.priority == send_welcome_email.get_result(result.id).task.priority == 5


async def test_a_runner_with_room_claims_the_job_in_the_insert(start_runner: Any) -> None:
    runner = await start_runner()

    def enqueue_and_read_before_commit() -> Job:
        # Read inside the transaction: after the commit the job is handed over
        # and may have finished already.
        with transaction.atomic():
            result = send_welcome_email.enqueue("fast@example.com")
            return Job.objects.get(id=result.id)

    stored = await sync_to_async(enqueue_and_read_before_commit)()
    assert (stored.status, stored.lease_owner, stored.attempts) == (
        TaskResultStatus.RUNNING,
        runner.worker_id,
        1,
    )
    assert stored.lease_expires_at is not None
    assert stored.lease_expires_at > timezone.now() + timedelta(seconds=25)  # FAST: 30 s.


async def test_a_full_runner_leaves_the_job_to_the_ledger(
    smtp_server: SMTPTestServer, start_runner: Any
) -> None:
    smtp_server.delay = 2  # The first job holds the only slot meanwhile.
    emails = [f"full{i}@example.com" for i in range(3)]
    await new_accounts(*emails)
    # Holds 2 jobs: one running, one waiting. No poll meanwhile: a sweep that
    # began before the hand-overs would claim the third with the room it saw then.
    runner = await start_runner(concurrency=1, poll_interval=600)
    await sweeps(runner, 1)  # The sweep at start.
    results = [await send_welcome_email.aenqueue(email) for email in emails]
    owners = [(await Job.objects.aget(id=r.id)).lease_owner for r in results]
    assert owners == [runner.worker_id, runner.worker_id, None]
    await runner.stop(drain_timeout=0)  # Not worth waiting for the slow server.


async def test_a_job_rolled_back_with_its_transaction_is_never_handed_over(
    smtp_server: SMTPTestServer, start_runner: Any
) -> None:
    await new_accounts("rolled-back@example.com", "committed@example.com")
    runner = await start_runner()
    with pytest.raises(Abort):
        await sync_to_async(enqueue_then_roll_back)("rolled-back@example.com")
    await send_welcome_email.aenqueue("committed@example.com")
    await until(lambda: "committed@example.com" in smtp_server.recipients(), "its mail")
    await sweeps(runner, 2)
    assert smtp_server.recipients() == ["committed@example.com"]
    assert smtp_server.data_commands == 1
    assert [job.args async for job in Job.objects.all()] == [["committed@example.com"]]


async def test_a_deferred_job_is_not_claimed_in_the_insert(start_runner: Any) -> None:
    await start_runner()
    later = timezone.now() + timedelta(minutes=5)
    result = await send_welcome_email.using(run_after=later).aenqueue("later@example.com")
    stored = await Job.objects.aget(id=result.id)
    assert (stored.status, stored.lease_owner, stored.run_after) == (
        TaskResultStatus.READY,
        None,
        later,
    )


def test_get_result_reads_the_ledger() -> None:
    result = send_welcome_email.enqueue("read@example.com")
    Job.objects.filter(id=result.id).update(
        status=TaskResultStatus.SUCCESSFUL, return_value=True, worker_ids=["w1"]
    )
    stored = send_welcome_email.get_result(result.id)
    assert (stored.id, stored.status, stored.return_value) == (
        result.id,
        TaskResultStatus.SUCCESSFUL,
        True,
    )
    assert (stored.args, stored.worker_ids) == (["read@example.com"], ["w1"])


@pytest.mark.parametrize("unknown", ["no-such-job", "x" * 40, ""])
def test_get_result_for_an_unknown_id_says_it_does_not_exist(unknown: str) -> None:
    with pytest.raises(TaskResultDoesNotExist):
        send_welcome_email.get_result(unknown)
