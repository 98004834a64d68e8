"""The ledger's queries: claims, leases, outcome batches that roll back."""

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.tasks import TaskResultStatus
from django.utils import timezone

from background import ledger
from background.models import Job
from mailer.tasks import send_welcome_email
from signup.models import User
from tests.support.jobs import job, new_accounts, reaches, sweeps
from tests.support.smtp_server import SMTPTestServer

pytestmark = pytest.mark.django_db(transaction=True)

READY, RUNNING = TaskResultStatus.READY, TaskResultStatus.RUNNING
SUCCESSFUL, FAILED = TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED
TASK = {
    "task_path": "mailer.tasks.send_welcome_email",
    "backend": "default",
    "queue_name": "default",
}


def ledger_job(job_id: str, **fields: Any) -> Job:
    return Job.objects.create(id=job_id, args=[f"{job_id}@example.com"], **TASK, **fields)


def test_orphans_are_claimed_first_then_due_jobs_by_priority_and_age() -> None:
    now = timezone.now()
    ledger_job("old-low", run_after=now - timedelta(minutes=2))
    ledger_job("new-high", run_after=now - timedelta(minutes=1), priority=10)
    ledger_job("old-high", run_after=now - timedelta(minutes=3), priority=10)
    ledger_job("not-due", run_after=now + timedelta(minutes=1), priority=99)
    ledger_job("orphan", status=RUNNING, attempts=1, lease_owner="dead", lease_expires_at=now)
    ledger_job(
        "leased", status=RUNNING, attempts=1, lease_owner="alive",
        lease_expires_at=now + timedelta(minutes=1),
    )  # fmt: skip

    claimed = ledger.claim_ready_jobs("me", 3, 30)
    assert sorted(j.id for j in claimed) == ["new-high", "old-high", "orphan"]
    assert {(j.status, j.lease_owner) for j in claimed} == {(RUNNING, "me")}
    assert {j.id: j.attempts for j in claimed} == {"orphan": 2, "old-high": 1, "new-high": 1}

    assert [j.id for j in ledger.claim_ready_jobs("me", 5, 30)] == ["old-low"]
    assert ledger.claim_ready_jobs("me", 5, 30) == []
    assert Job.objects.get(id="leased").lease_owner == "alive"


def test_an_outcome_is_written_only_by_the_lease_holder() -> None:
    ledger_job("taken", status=RUNNING, attempts=1, lease_owner="newer-owner")
    stale = Job.objects.get(id="taken")
    stale.lease_owner = "me"  # What a stalled worker still believes.
    assert ledger.write_outcomes([(ledger.record_success, (stale, "me", True))]) == [False]
    stored = Job.objects.get(id="taken")
    assert (stored.status, stored.lease_owner) == (RUNNING, "newer-owner")


def test_alike_successes_in_one_batch_are_written_only_where_the_lease_is_still_held() -> None:
    for job_id in ("first", "second", "lost"):
        ledger_job(job_id, status=RUNNING, attempts=1, lease_owner="me")
    held = {j.id: j for j in Job.objects.all()}
    Job.objects.filter(id="lost").update(lease_owner="newer-owner")  # Taken over meanwhile.

    writes = [(ledger.record_success, (held[job_id], "me", True)) for job_id in held]
    assert ledger.write_outcomes(writes) == [job_id != "lost" for job_id in held]
    stored = {j.id: j for j in Job.objects.all()}
    for job_id in ("first", "second"):
        assert (stored[job_id].status, stored[job_id].lease_owner) == (SUCCESSFUL, None)
        assert (stored[job_id].worker_ids, stored[job_id].return_value) == (["me"], True)
        assert held[job_id].status == SUCCESSFUL  # The caller's copy follows the commit.
    assert (stored["lost"].status, stored["lost"].lease_owner) == (RUNNING, "newer-owner")
    assert held["lost"].status == RUNNING


def test_released_jobs_are_due_at_once_and_only_started_ones_keep_their_attempt() -> None:
    later = timezone.now() + timedelta(minutes=5)
    for job_id in ("started", "waiting", "others"):
        ledger_job(job_id, status=RUNNING, attempts=1, lease_owner="me", lease_expires_at=later)
    Job.objects.filter(id="others").update(lease_owner="someone-else")

    assert ledger.release_jobs("me", ["started"], started=True) == 1
    assert ledger.release_jobs("me", ["waiting", "others"], started=False) == 1
    jobs = {j.id: j for j in Job.objects.all()}
    assert {j.id for j in jobs.values() if j.status == READY} == {"started", "waiting"}
    assert (jobs["started"].attempts, jobs["waiting"].attempts) == (1, 0)
    assert jobs["started"].run_after <= timezone.now()
    assert jobs["others"].lease_owner == "someone-else"


def test_a_heartbeat_renews_only_this_workers_running_leases() -> None:
    soon = timezone.now() + timedelta(seconds=1)
    ledger_job("mine", status=RUNNING, attempts=1, lease_owner="me", lease_expires_at=soon)
    ledger_job("theirs", status=RUNNING, attempts=1, lease_owner="them", lease_expires_at=soon)
    assert ledger.renew_leases("me", ["mine", "theirs"], 60) == 1
    leases = dict(Job.objects.values_list("id", "lease_expires_at"))
    assert leases["mine"] > timezone.now() + timedelta(seconds=50)
    assert leases["theirs"] == soon


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
    assert (claimed.status, claimed.worker_ids) == (RUNNING, [])
    assert Job.objects.get().status == RUNNING

    assert ledger.write_outcomes([(ledger.record_success, (claimed, "worker-a", True))]) == [True]
    stored = Job.objects.get()
    assert (stored.status, stored.worker_ids) == (TaskResultStatus.SUCCESSFUL, ["worker-a"])
    assert (claimed.status, claimed.worker_ids) == (TaskResultStatus.SUCCESSFUL, ["worker-a"])


async def test_expired_lease_is_taken_over_and_live_lease_is_not(
    smtp_server: SMTPTestServer, start_runner: Any
) -> None:
    await new_accounts("orphan@example.com", "busy@example.com")
    now = timezone.now()
    common = {**TASK, "status": RUNNING, "attempts": 1}
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
    taken_over = await reaches(orphan.id, TaskResultStatus.SUCCESSFUL)
    await sweeps(runner, 3)  # The live lease must stay untouched through later sweeps.
    assert smtp_server.recipients() == ["orphan@example.com"]
    assert taken_over.attempts == 2
    assert taken_over.worker_ids == [runner.worker_id]
    untouched = await job(busy.id)
    assert untouched.status == RUNNING
    assert untouched.lease_owner == "live-host:1:x"


def test_run_again_now_brings_waiting_jobs_forward_and_keeps_due_ones_in_place() -> None:
    now = timezone.now()
    ledger_job("due-since-an-hour", run_after=now - timedelta(hours=1))
    ledger_job("in-an-hour", run_after=now + timedelta(hours=1), attempts=4)
    ledger_job("failed", status=TaskResultStatus.FAILED, attempts=20, finished_at=now)
    ledger_job("running", status=RUNNING, lease_owner="w", run_after=now - timedelta(hours=2))

    assert ledger.run_again_now(Job.objects.exclude(id="due-since-an-hour")) == 2
    assert ledger.run_again_now(Job.objects.filter(id="due-since-an-hour")) == 1

    jobs = {j.id: j for j in Job.objects.all()}
    # Still first in the claim order: its place is not given up for "now".
    assert jobs["due-since-an-hour"].run_after == now - timedelta(hours=1)
    assert now <= jobs["in-an-hour"].run_after <= timezone.now()
    assert jobs["in-an-hour"].attempts == 4
    assert (jobs["failed"].status, jobs["failed"].attempts) == (READY, 0)
    assert jobs["failed"].finished_at is None
    assert (jobs["running"].status, jobs["running"].lease_owner) == (RUNNING, "w")
    (first,) = ledger.claim_ready_jobs("me", 1, 30)
    assert first.id == "due-since-an-hour"


def test_a_recorded_error_carries_its_time_and_results_still_read_it() -> None:
    job = ledger_job("failing", status=RUNNING, lease_owner="me", attempts=1)
    error = {"exception_class_path": "tests.Boom", "traceback": "Traceback ...\ntests.Boom: x"}
    before = timezone.now()
    assert ledger.write_outcomes([(ledger.record_failure, (job, "me", error, None))]) == [True]

    (recorded,) = Job.objects.get(id="failing").errors
    assert before <= datetime.fromisoformat(recorded["failed_at"]) <= timezone.now()
    (task_error,) = send_welcome_email.get_result("failing").errors
    assert (task_error.exception_class_path, task_error.traceback) == (
        "tests.Boom",
        "Traceback ...\ntests.Boom: x",
    )


def test_an_inserted_job_reads_back_as_the_orm_would_have_written_it() -> None:
    now = timezone.now()
    new = Job(
        args=["zoë@example.com", {"n": 1}],
        kwargs={"flag": True},
        run_after=now,
        enqueued_at=now,
        status=RUNNING,
        attempts=1,
        lease_owner="me",
        lease_expires_at=now + timedelta(seconds=60),
        **TASK,
    )
    ledger.insert_job(new)

    stored = Job.objects.get(id=new.id)
    fields = [field.attname for field in Job._meta.concrete_fields]
    assert {name: getattr(stored, name) for name in fields} == {
        name: getattr(new, name) for name in fields
    }
    # Written, as save() would leave it: saving again updates the same row.
    assert not new._state.adding and new._state.db == "default"
    new.attempts = 2
    new.save()
    assert Job.objects.get().attempts == 2


def test_an_outcome_update_writes_the_row_the_orm_update_would_have() -> None:
    now = timezone.now()
    changes = {
        "status": FAILED,
        "finished_at": now,
        "run_after": now + timedelta(seconds=5),
        "errors": [{"message": "zoë's relay said 451", "failed_at": now.isoformat()}],
        "return_value": None,
        "worker_ids": ["one", "me"],
        "lease_owner": None,
        "lease_expires_at": None,
    }
    for job_id in ("by-orm", "by-ledger", "not-mine"):
        ledger_job(job_id, status=RUNNING, attempts=1, lease_owner="me", return_value={"a": 1})
    Job.objects.filter(id="not-mine").update(lease_owner="other")

    Job.objects.filter(id="by-orm", lease_owner="me").update(**changes)
    assert ledger._update_if_leased(["by-ledger", "not-mine"], "me", changes) == 1

    stored = {j.id: {name: getattr(j, name) for name in changes} for j in Job.objects.all()}
    assert stored["by-ledger"] == stored["by-orm"]
    assert stored["by-ledger"]["return_value"] is None
    assert (stored["not-mine"]["status"], stored["not-mine"]["lease_owner"]) == (RUNNING, "other")
