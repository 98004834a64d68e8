"""Retention of the job ledger: what housekeeping deletes, keeps, and how much per call."""

import logging
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from background import ledger
from background.housekeeping import housekeeping, run_housekeeping
from background.models import Job

pytestmark = pytest.mark.django_db(transaction=True)

READY = "READY"
RUNNING = "RUNNING"
SUCCESSFUL = "SUCCESSFUL"
FAILED = "FAILED"


def jobs(status: str, count: int = 1, *, finished_days_ago: float | None = None) -> list[str]:
    now = timezone.now()
    finished_at = None if finished_days_ago is None else now - timedelta(days=finished_days_ago)
    created = Job.objects.bulk_create(
        Job(
            task_path="mailer.tasks.send_welcome_email",
            backend="default",
            queue_name="default",
            status=status,
            enqueued_at=now - timedelta(days=30),
            run_after=now - timedelta(days=30),
            finished_at=finished_at,
        )
        for _ in range(count)
    )
    return sorted(job.id for job in created)


def job_deletes(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].startswith('DELETE FROM "background_job"')]


def remaining() -> set[str]:
    return set(Job.objects.values_list("id", flat=True))


def test_finished_jobs_older_than_the_retention_are_deleted(settings: Any) -> None:
    settings.TASKS_RESULT_RETENTION = timedelta(days=3)
    old = jobs(SUCCESSFUL, 2, finished_days_ago=4) + jobs(FAILED, 2, finished_days_ago=4)
    recent = jobs(SUCCESSFUL, finished_days_ago=2.9) + jobs(FAILED, finished_days_ago=1)
    # Enqueued a month ago but not finished: waiting, retrying or running.
    unfinished = jobs(READY) + jobs(RUNNING)

    counts = run_housekeeping()

    assert counts["finished_jobs"] == len(old)
    assert remaining() == {*recent, *unfinished}


def test_retention_off_keeps_every_job(settings: Any) -> None:
    settings.TASKS_RESULT_RETENTION = None
    kept = jobs(SUCCESSFUL, 3, finished_days_ago=400)

    assert run_housekeeping()["finished_jobs"] == 0
    assert remaining() == set(kept)


def test_one_call_deletes_at_most_its_batches_and_the_next_goes_on(settings: Any) -> None:
    settings.TASKS_RESULT_RETENTION = timedelta(days=3)
    old = jobs(SUCCESSFUL, 7, finished_days_ago=5)

    with CaptureQueriesContext(connection) as queries:
        first = run_housekeeping(batch_size=2, max_batches=3)
    assert first["finished_jobs"] == 6
    assert [sql.count("LIMIT 2") for sql in job_deletes(queries)] == [1, 1, 1]
    assert len(remaining()) == 1

    with CaptureQueriesContext(connection) as queries:
        second = run_housekeeping(batch_size=2, max_batches=3)
    assert second["finished_jobs"] == 1
    assert len(job_deletes(queries)) == 1  # A short batch means nothing is left.
    assert remaining().isdisjoint(old)


def test_oldest_finished_jobs_go_first(settings: Any) -> None:
    settings.TASKS_RESULT_RETENTION = timedelta(days=3)
    oldest = jobs(SUCCESSFUL, finished_days_ago=9)
    older = jobs(FAILED, finished_days_ago=8)
    old = jobs(SUCCESSFUL, finished_days_ago=7)

    ledger.delete_finished_jobs(timezone.now() - timedelta(days=3), limit=2)

    assert remaining() == set(old)
    assert Job.objects.filter(id__in=oldest + older).count() == 0


@pytest.fixture
def receiver() -> Iterator[Any]:
    connected: list[Any] = []

    def connect(func: Any) -> None:
        housekeeping.connect(func, weak=False)
        connected.append(func)

    yield connect
    for func in connected:
        housekeeping.disconnect(func)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_other_apps_report_through_the_signal_and_a_broken_one_stops_none(
    settings: Any, receiver: Any
) -> None:
    settings.TASKS_RESULT_RETENTION = timedelta(days=3)
    jobs(SUCCESSFUL, finished_days_ago=4)

    def broken(**kwargs: Any) -> dict[str, int]:
        raise ValueError("receiver bug")

    seen: dict[str, Any] = {}

    def working(**kwargs: Any) -> dict[str, int]:
        seen.update(kwargs)
        return {"widgets": 4}

    receiver(broken)
    receiver(working)
    logged = Records()
    logging.getLogger("background.housekeeping").addHandler(logged)
    try:
        counts = run_housekeeping(batch_size=50, max_batches=2)
    finally:
        logging.getLogger("background.housekeeping").removeHandler(logged)

    assert counts["finished_jobs"] == 1
    assert counts["widgets"] == 4
    assert seen["batch_size"] == 50
    assert seen["max_batches"] == 2
    (failure,) = [r for r in logged.records if r.levelno == logging.ERROR]
    assert failure.exc_info is not None
    assert str(failure.exc_info[1]) == "receiver bug"


def test_a_database_error_in_a_receiver_reaches_the_caller_after_the_others(
    settings: Any, receiver: Any
) -> None:
    settings.TASKS_RESULT_RETENTION = timedelta(days=3)
    calls: list[str] = []

    def database_down(**kwargs: Any) -> dict[str, int]:
        calls.append("down")
        raise OperationalError("server closed the connection unexpectedly")

    def later(**kwargs: Any) -> dict[str, int]:
        calls.append("later")
        return {}

    receiver(database_down)
    receiver(later)
    with pytest.raises(OperationalError, match="server closed"):
        run_housekeeping()
    assert calls == ["down", "later"]


def test_the_management_command_reports_what_it_deleted(settings: Any) -> None:
    settings.TASKS_RESULT_RETENTION = timedelta(days=3)
    jobs(FAILED, 3, finished_days_ago=10)
    out = StringIO()

    call_command("housekeeping", stdout=out)

    assert "3 finished_jobs" in out.getvalue()
    assert remaining() == set()


def test_errors_kept_per_job_are_capped() -> None:
    (job_id,) = jobs(READY)
    job = Job.objects.get(id=job_id)
    long_traceback = "Traceback (most recent call last):\n" + "  frame\n" * 2000 + "Boom: last"
    for attempt in range(1, 26):
        Job.objects.filter(id=job_id).update(status=RUNNING, lease_owner="worker")
        error = {"exception_class_path": f"tests.Error{attempt}", "traceback": long_traceback}
        assert ledger.record_failure(job, "worker", error, retry_at=timezone.now())

    errors = Job.objects.get(id=job_id).errors
    assert len(errors) == ledger.KEPT_ERRORS
    assert [e["exception_class_path"] for e in errors] == [
        f"tests.Error{attempt}" for attempt in range(26 - ledger.KEPT_ERRORS, 26)
    ]
    for error in errors:
        assert error["traceback"].endswith("  frame\nBoom: last")
        assert len(error["traceback"]) < ledger.KEPT_TRACEBACK_CHARS + 40
        assert error["traceback"].startswith(f"[{len(long_traceback) - 4000} characters trimmed]")


def test_short_tracebacks_are_kept_whole() -> None:
    (job_id,) = jobs(READY)
    job = Job.objects.get(id=job_id)
    Job.objects.filter(id=job_id).update(status=RUNNING, lease_owner="worker")
    error = {"exception_class_path": "tests.Error", "traceback": "Traceback ...\nError: short"}

    ledger.record_failure(job, "worker", error, retry_at=None)

    (kept,) = Job.objects.get(id=job_id).errors
    assert kept.pop("failed_at")  # The ledger's own stamp (test_ledger.py).
    assert kept == error
