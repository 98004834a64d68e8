"""Every read and write the runner makes to the job ledger, and the operator's changes.

Plain synchronous ORM code: the runner calls it on ``database.runner_threads``;
the admin and the management commands call it from their own thread. The two
statements every mail costs (its job's INSERT, its outcome's UPDATE) are built
once per database, not by the ORM on every call.
Each write that ends an attempt is conditional on still holding the lease, so
a worker that lost its lease (it stalled, another took the job over) cannot
overwrite the newer owner's outcome.
"""

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.db import connection, connections, router, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Count, F, Field, Min, Q, QuerySet
from django.db.models.functions import Coalesce, Least
from django.tasks import TaskResultStatus
from django.utils import timezone

from .models import Job

READY = TaskResultStatus.READY
RUNNING = TaskResultStatus.RUNNING
SUCCESSFUL = TaskResultStatus.SUCCESSFUL
FAILED = TaskResultStatus.FAILED


# The channel on which a due job written to the ledger is announced (PostgreSQL
# only); each runner LISTENs on it (background/wakeup.py) and sweeps at once.
JOBS_CHANNEL = "background_jobs"


def announce_due_jobs() -> None:
    """NOTIFY idle runners in every process that a job is due, when this transaction commits.

    Call it in the transaction that wrote the job. PostgreSQL delivers the
    notification at commit, never for a rollback, and only once per
    transaction for identical ones, so a burst of enqueues in one transaction
    wakes each runner once. A transaction that notifies takes a server-wide
    lock at commit, so only jobs no runner took in memory are announced. On
    other databases it does nothing: runners find the job at their next poll.
    """
    ledger_connection = connections[router.db_for_write(Job)]
    if ledger_connection.vendor != "postgresql":
        return
    with ledger_connection.cursor() as cursor:
        cursor.execute(f"NOTIFY {JOBS_CHANNEL}")


@cache  # Per database alias: its kind and the model's columns are fixed.
def _insert_statement(alias: str) -> tuple[str, tuple[Field, ...]]:
    quote = connections[alias].ops.quote_name
    columns = tuple(Job._meta.local_concrete_fields)
    return (
        f"INSERT INTO {quote(Job._meta.db_table)}"
        f" ({', '.join(quote(field.column) for field in columns)})"
        f" VALUES ({', '.join(['%s'] * len(columns))})",
        columns,
    )


def insert_job(job: Job) -> None:
    """Write the new ``job`` (every field set) in the caller's transaction.

    What ``job.save(force_insert=True)`` does, less the ORM's building of
    the same INSERT for every signup: ~370 -> ~110 us of CPU on the request
    path (measured on the bench machine). Each value is still prepared by
    its field (``get_db_prep_save``: JSON, datetimes); Job has no save()
    of its own and nothing listens for its save signals.
    """
    alias = router.db_for_write(Job)
    database = connections[alias]
    sql, columns = _insert_statement(alias)
    values = [field.get_db_prep_save(getattr(job, field.attname), database) for field in columns]
    with database.cursor() as cursor:
        cursor.execute(sql, values)
    job._state.adding = False
    job._state.db = alias


def _orphaned(now: datetime) -> Q:
    """Running, but its lease ran out: its process died or stalled."""
    return Q(status=RUNNING, lease_expires_at__lt=now)


def _due(now: datetime) -> Q:
    return Q(status=READY, run_after__lte=now)


def claim_ready_jobs(
    worker_id: str, limit: int, lease_seconds: float, held: Collection[str] = ()
) -> list[Job]:
    """Atomically take up to ``limit`` orphaned, then due, jobs for ``worker_id``.

    ``held`` are the ids the worker has in memory: never orphans to it, even
    if their leases ran out (a database outage stopped the renewals, or a
    signup's commit came after its job's lease), since it runs them already.

    The rows found stay ours until the commit, so the UPDATE goes by primary
    key alone: on PostgreSQL ``FOR UPDATE SKIP LOCKED`` locks them (and lets
    workers claim side by side); on SQLite the IMMEDIATE transaction holds the
    write lock from BEGIN (and in WAL mode a transaction that started without
    it fails with "database is locked" rather than write over a newer claim).

    Each kind is its own query, not one with OR, and the UPDATE names no other
    column: each query then walks its index in order and stops at ``limit``, so
    a claim costs the same with 100 or 100,000 jobs waiting (with the OR, SQLite
    sorted every due job for every claim: 85 ms per claim at 100,000).
    """
    now = timezone.now()
    lease_until = now + timedelta(seconds=lease_seconds)
    claim = {
        "status": RUNNING,
        "lease_owner": worker_id,
        "lease_expires_at": lease_until,
        "attempts": F("attempts") + 1,
        "started_at": Coalesce("started_at", now),
        "last_attempted_at": now,
    }
    ids: list[str] = []
    with transaction.atomic():
        for condition, order in (
            (_orphaned(now), ["lease_expires_at"]),
            (_due(now), ["-priority", "run_after"]),
        ):
            if len(ids) == limit:
                break
            found = list(
                Job.objects.select_for_update(skip_locked=True)
                .filter(condition)
                .exclude(id__in=held)
                .order_by(*order)
                .values_list("id", flat=True)[: limit - len(ids)]
            )
            Job.objects.filter(id__in=found).update(**claim)
            ids += found
        if not ids:
            return []
        return list(
            Job.objects.filter(id__in=ids, lease_owner=worker_id, lease_expires_at=lease_until)
        )


@cache  # Per database alias and set of columns: fixed once built.
def _update_statement(alias: str, names: tuple[str, ...]) -> tuple[str, tuple[Field, ...]]:
    quote = connections[alias].ops.quote_name
    fields = tuple(Job._meta.get_field(name) for name in names)
    lease_owner = Job._meta.get_field("lease_owner")
    return (
        f"UPDATE {quote(Job._meta.db_table)}"
        f" SET {', '.join(f'{quote(field.column)} = %s' for field in fields)}"
        f" WHERE {quote(lease_owner.column)} = %s AND {quote(Job._meta.pk.column)} IN ",
        fields,
    )


def _update_if_leased(ids: list[str], worker_id: str, changes: dict[str, Any]) -> int:
    """Write ``changes`` to the jobs of ``ids`` still leased to ``worker_id``; how many were.

    What ``Job.objects.filter(id__in=ids, lease_owner=worker_id).update(**changes)``
    does, less the ORM's building of the same UPDATE for every outcome batch:
    ~480 -> ~285 us of CPU for a batch of one, which is one per mail at low
    load (measured on the bench machine), and the server's CPU at 40 signups/s
    went 42.5 -> 39.4 %. Values are prepared by their fields, as
    the ORM's UPDATE prepares them.
    """
    alias = router.db_for_write(Job)
    database = connections[alias]
    sql, fields = _update_statement(alias, tuple(changes))
    values = [field.get_db_prep_save(changes[field.name], database) for field in fields]
    with database.cursor() as cursor:
        cursor.execute(f"{sql}({', '.join(['%s'] * len(ids))})", [*values, worker_id, *ids])
        return cursor.rowcount


def _finish_attempts(jobs: list[Job], worker_id: str, **outcome: Any) -> list[bool]:
    """Write one outcome to the attempts of ``jobs`` in one UPDATE, also onto the jobs.

    The jobs share a history (``worker_ids``). Returns, per job, False if its
    lease was lost. The jobs change only once the write has committed: a
    batch that rolls back is retried from the same state.
    """
    outcome |= {
        "worker_ids": [*jobs[0].worker_ids, worker_id],
        "lease_owner": None,
        "lease_expires_at": None,
    }
    ids = [job.id for job in jobs]
    updated = _update_if_leased(ids, worker_id, outcome)
    if updated in (0, len(ids)):
        written = set(ids) if updated else set()
    else:
        # Some of several leases were lost (rare). Several jobs share an
        # outcome only as successes, which carry their finish time: the rows
        # this UPDATE wrote are the ones with that time.
        written = set(
            Job.objects.filter(
                id__in=ids, lease_owner=None, finished_at=outcome["finished_at"]
            ).values_list("id", flat=True)
        )

    def apply() -> None:
        for job in jobs:
            if job.id in written:
                for name, value in outcome.items():
                    setattr(job, name, value)

    transaction.on_commit(apply)
    return [job.id in written for job in jobs]


def record_success(job: Job, worker_id: str, return_value: Any) -> bool:
    return _record_successes([job], worker_id, return_value)[0]


def _record_successes(jobs: list[Job], worker_id: str, return_value: Any) -> list[bool]:
    return _finish_attempts(
        jobs, worker_id, status=SUCCESSFUL, finished_at=timezone.now(), return_value=return_value
    )


# A job's error history is rewritten whole with every failure and read whole
# by get_result, so it is capped: the last attempts tell what is wrong, and a
# traceback's end holds the failing call and the message. A refused SMTP
# connection's chained traceback is ~3,600 characters through the runner, so
# it stays whole; a job keeps at most ~40 kB of errors, where 20 attempts (and
# 20 more after each requeue_failed_jobs) grew without bound.
KEPT_ERRORS = 10
KEPT_TRACEBACK_CHARS = 4000


def _trimmed(error: dict[str, str]) -> dict[str, str]:
    traceback = error.get("traceback", "")
    cut = len(traceback) - KEPT_TRACEBACK_CHARS
    if cut <= 0:
        return error
    return error | {"traceback": f"[{cut} characters trimmed]\n{traceback[cut:]}"}


def record_failure(
    job: Job, worker_id: str, error: dict[str, str], retry_at: datetime | None
) -> bool:
    """Record the error and its time; run the job again at ``retry_at`` or end it as FAILED."""
    now = timezone.now()
    # The time is the error's own: a job's timestamps say when it last
    # started, not when an earlier attempt failed (the admin shows both).
    record = _trimmed(error) | {"failed_at": now.isoformat()}
    errors = [*job.errors, record][-KEPT_ERRORS:]
    if retry_at is not None:
        outcome = {"status": READY, "run_after": retry_at, "errors": errors}
    else:
        outcome = {"status": FAILED, "finished_at": now, "errors": errors}
    return _finish_attempts([job], worker_id, **outcome)[0]


def write_outcomes(writes: list[tuple[Callable[..., bool], tuple[Any, ...]]]) -> list[bool]:
    """Run several outcome writes (``record_success``, ...) in one transaction.

    Successes alike (same worker, history and return value: nearly all of a
    batch) share one UPDATE. On SQLite the transaction holds the one write
    lock that signups wait for, sleeping in SQLite's busy handler: one
    statement instead of one per job keeps that hold short.
    """
    results: dict[int, bool] = {}
    alike: dict[tuple[str, tuple[str, ...], str], list[int]] = {}
    with transaction.atomic():
        for i, (write, args) in enumerate(writes):
            if write is record_success:
                job, worker_id, value = args
                key = (worker_id, tuple(job.worker_ids), json.dumps(value, sort_keys=True))
                alike.setdefault(key, []).append(i)
            else:
                results[i] = write(*args)
        for (worker_id, _, _), indexes in alike.items():
            jobs = [writes[i][1][0] for i in indexes]
            value = writes[indexes[0]][1][2]
            results |= dict(zip(indexes, _record_successes(jobs, worker_id, value), strict=True))
    return [results[i] for i in range(len(writes))]


def release_jobs(worker_id: str, job_ids: list[str], *, started: bool) -> int:
    """Give jobs back so the next start, or another process, runs them at once.

    Jobs that never started get their claim back from the attempt count.
    """
    if not job_ids:
        return 0
    changes: dict[str, Any] = {}
    if not started:
        changes["attempts"] = F("attempts") - 1
    with transaction.atomic():
        released = Job.objects.filter(id__in=job_ids, lease_owner=worker_id).update(
            status=READY,
            run_after=timezone.now(),
            lease_owner=None,
            lease_expires_at=None,
            **changes,
        )
        if released:
            announce_due_jobs()  # Another process takes them now, not at its next poll.
    return released


def renew_leases(worker_id: str, job_ids: list[str], lease_seconds: float) -> int:
    """Extend the leases this worker still holds on ``job_ids`` (its heartbeat)."""
    return Job.objects.filter(id__in=job_ids, lease_owner=worker_id, status=RUNNING).update(
        lease_expires_at=timezone.now() + timedelta(seconds=lease_seconds)
    )


def _queued_again(now: datetime) -> dict[str, Any]:
    """A FAILED job's changes to run again at once, with a fresh set of attempts.

    Its error history stays: the next failure is added to it.
    """
    return {"status": READY, "attempts": 0, "run_after": now, "finished_at": None}


def requeue_failed_jobs(task_path: str | None = None) -> int:
    """Queue every FAILED job (of ``task_path``, if given) again, due now; returns how many."""
    failed = Job.objects.filter(status=FAILED)
    if task_path:
        failed = failed.filter(task_path=task_path)
    with transaction.atomic():
        count = failed.update(**_queued_again(timezone.now()))
        if count:
            announce_due_jobs()
    return count


def run_again_now(jobs: QuerySet[Job]) -> int:
    """Make the FAILED and READY jobs among ``jobs`` due now; returns how many.

    READY jobs (waiting for a retry's backoff or a deferred start) keep their
    attempts and only come forward; FAILED jobs are queued again with a fresh
    set, as by ``requeue_failed_jobs``. RUNNING jobs (a worker holds the lease)
    and SUCCESSFUL ones (delivered) are left alone. The status is in each
    UPDATE's WHERE, so a job a runner claimed meanwhile is not touched.
    """
    now = timezone.now()
    # By id through a subquery: whatever filters chose the jobs (the admin's
    # search, its "select all"), the UPDATEs stay plain and bounded in size.
    chosen = Job.objects.filter(id__in=jobs.values("id"))
    with transaction.atomic():
        # Least keeps an already-due job's place in the claim order.
        waiting = chosen.filter(status=READY).update(run_after=Least(F("run_after"), now))
        failed = chosen.filter(status=FAILED).update(**_queued_again(now))
        if waiting or failed:
            announce_due_jobs()  # An idle runner in any process takes them now (PostgreSQL).
    return waiting + failed


def count_jobs_by_status() -> dict[str, int]:
    # Count("*"), not Count("id"): no column to read per row (38 vs 21 ms at 100,000 jobs).
    counts = {status.value: 0 for status in TaskResultStatus}
    for row in Job.objects.values("status").annotate(n=Count("*")).order_by():
        counts[row["status"]] = row["n"]
    return counts


# What /metrics reports of the ledger: the jobs not yet done with, and the
# failed ones. SUCCESSFUL jobs are most of the table (kept for
# TASKS_RESULT_RETENTION) and counting them would scan it on every scrape.
BACKLOG_STATUSES = (READY, RUNNING, FAILED)


@dataclass(frozen=True, kw_only=True)
class Backlog:
    jobs: dict[str, int]  # By status, BACKLOG_STATUSES only.
    oldest_due_seconds: float  # How long the READY job due longest has waited; 0 if none.


def backlog() -> Backlog:
    """The ledger's depth, for a scrape: two scans of the ``job_next`` index alone.

    With 100,000 jobs READY (and as many SUCCESSFUL, not read) on SQLite:
    counts 8 ms and the oldest due job 12 ms. ``Count("id")`` instead of
    ``*`` read every row from the table too: 38 ms.
    """
    now = timezone.now()
    jobs = dict.fromkeys(BACKLOG_STATUSES, 0)
    rows = Job.objects.filter(status__in=BACKLOG_STATUSES).values("status").annotate(n=Count("*"))
    for row in rows.order_by():
        jobs[row["status"]] = row["n"]
    oldest = Job.objects.filter(_due(now)).aggregate(due=Min("run_after"))["due"]
    waited = (now - oldest).total_seconds() if oldest is not None else 0.0
    return Backlog(jobs={str(status): n for status, n in jobs.items()}, oldest_due_seconds=waited)


class LedgerNotReady(Exception):
    """The database answers, but its schema is not the one this code needs."""


def check_migrated() -> None:
    """Raise ``LedgerNotReady`` naming the fix if migrations are not all applied."""
    executor = MigrationExecutor(connection)
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if pending:
        first = pending[0][0]
        raise LedgerNotReady(
            f"{len(pending)} migration(s) not applied, the first {first.app_label}.{first.name}:"
            " run `python manage.py migrate`"
        )


def check_ledger() -> None:
    """Raise if the ledger table cannot be read (database down, not migrated)."""
    Job.objects.exists()


def delete_finished_jobs(finished_before: datetime, limit: int) -> int:
    """Delete up to ``limit`` jobs that finished before ``finished_before``, oldest first.

    Only SUCCESSFUL and FAILED jobs have a ``finished_at`` (``requeue_failed_jobs``
    clears it), so the date alone picks them. With a status condition as well,
    SQLite, which keeps no statistics unless ANALYZE ran, walked every
    SUCCESSFUL job through the ``job_next`` index: 200-550 ms per batch at
    100,000 jobs, against 13-60 ms with the ``job_finished`` index alone.
    In one statement, and the outer WHERE repeats the date, so a job queued
    again meanwhile is not deleted (PostgreSQL re-checks it on the new row).
    """
    finished = Job.objects.filter(finished_at__lt=finished_before)
    oldest = finished.order_by("finished_at").values("id")[:limit]
    deleted, _ = finished.filter(id__in=oldest).delete()
    return deleted
