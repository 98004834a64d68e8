"""Runs ledger jobs as asyncio tasks on the server's own event loop.

When and how often a job runs lives here: claims, leases, retries, drain.
What a job does is the task's business; this module knows nothing of mail.
"""

import asyncio
import contextvars
import logging
import os
import socket
import time
import traceback
from collections import deque
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import Any, Self

from django.dispatch import Signal
from django.tasks import TaskContext
from django.tasks.signals import task_finished, task_started
from django.utils import timezone
from django.utils.crypto import get_random_string
from django.utils.json import normalize_json

from asgi_project import metrics
from asgi_project.logs import job_log_context

from . import ledger
from .database import DatabaseUnavailable, first_line, runner_threads
from .housekeeping import run_housekeeping
from .models import Job
from .outcomes import OutcomeWriter
from .pacing import LoopPacer, traffic
from .results import load_task, task_result_for
from .retry import backoff_delay, is_transient
from .wakeup import WakeupListener, listener_for

logger = logging.getLogger(__name__)

_active_runner: "JobRunner | None" = None

# Sent (with asend, on the runner's loop) when a runner has started and after
# it has stopped, so the parts jobs use, such as mail connections, can live as
# long as the runner without the runner knowing about them.
runner_started = Signal()
runner_stopped = Signal()


def active_runner() -> "JobRunner | None":
    """The runner started in this process, if any (read from any thread)."""
    return _active_runner


@dataclass(frozen=True, kw_only=True)
class RunnerConfig:
    concurrency: int = 64  # TASKS_CONCURRENCY's default: see asgi_project/settings.py.
    max_attempts: int = 20
    retry_base_delay: float = 2.0
    retry_max_delay: float = 3600.0
    lease_seconds: float = 60.0
    poll_interval: float = 2.0
    drain_timeout: float = 20.0
    # Each call deletes up to 5,000 rows of each kind (background/housekeeping.py):
    # every 5 minutes, over a million a day.
    housekeeping_interval: float = 300.0
    # On PostgreSQL, LISTEN for jobs queued by other processes (background/wakeup.py).
    wakeup: bool = True

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Self:
        known = {field.name.upper(): field.name for field in fields(cls)}
        unknown = set(options) - set(known)
        if unknown:
            raise ValueError(f"Unknown TASKS OPTIONS: {', '.join(sorted(unknown))}")
        return cls(**{known[key]: value for key, value in options.items()})


class GaveUp(Exception):
    """The job was claimed more often than MAX_ATTEMPTS allows (its runs keep dying)."""

    transient = False


def _error_record(error: BaseException) -> dict[str, str]:
    kind = type(error)
    return {
        "exception_class_path": f"{kind.__module__}.{kind.__qualname__}",
        "traceback": "".join(traceback.format_exception(error)),
    }


# The first housekeeping runs this soon after start (at most), so a service
# redeployed more often than the interval still prunes.
FIRST_HOUSEKEEPING_AFTER = 30.0

# With a backlog in the ledger, the runner sweeps again once this many slots
# are free (see JobRunner.sweep_batch).
CLAIM_BATCH = 8

# While the database is unreachable every sweep fails: say so once, then
# again at most this often, rather than one traceback per poll.
SWEEP_FAILURE_LOG_EVERY = 60.0


class JobRunner:
    def __init__(self, config: RunnerConfig) -> None:
        self.config = config
        self.worker_id = f"{socket.gethostname()[:40]}:{os.getpid()}:{get_random_string(8)}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running: dict[asyncio.Task[None], Job] = {}
        # Of those, the ones started and not yet out of their task (an outcome
        # waiting for the ledger's next batch is out): what the pacer limits.
        self._working: set[asyncio.Task[None]] = set()
        self._left_task = 0  # Jobs that came out of their task, ever (for the pacer).
        self._waiting: deque[Job] = deque()
        self._wake = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None
        self._housekeeper: asyncio.Task[None] | None = None
        self._listener: WakeupListener | None = None
        self._accepting = False
        self._backlog = False
        self._outcomes = OutcomeWriter(runner_threads.run)
        self._pacer = LoopPacer(
            config.concurrency,
            saturated=self._saturated,
            raised=self._start_next,
            working=lambda: len(self._working),
            finished=lambda: self._left_task,
        )
        self.last_sweep_at = time.monotonic()  # Of the last sweep that reached the ledger.

    # -- life cycle ---------------------------------------------------------

    async def start(self) -> None:
        """Check the ledger is usable, then start sweeping; raises if it is not."""
        global _active_runner
        await runner_threads.run(ledger.check_migrated)
        self.last_sweep_at = time.monotonic()
        self._loop = asyncio.get_running_loop()
        self._accepting = True
        await runner_started.asend(sender=type(self), runner=self)
        self._pacer.start()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="job-sweeper")
        self._housekeeper = asyncio.create_task(self._housekeep_forever(), name="housekeeping")
        if self.config.wakeup:
            self._listener = listener_for(self._job_announced)
        if self._listener is not None:
            self._listener.start()
        _active_runner = self
        logger.info("Job runner %s started", self.worker_id)

    async def stop(self, drain_timeout: float | None = None) -> tuple[int, int]:
        """Stop claiming, let running jobs finish until the deadline, release the rest.

        Returns (jobs finished while draining, jobs left for the next start).
        """
        global _active_runner
        if _active_runner is self:
            _active_runner = None
        self._accepting = False
        self._wake.set()
        if self._listener is not None:
            await self._listener.stop()
        await self._pacer.stop()
        if self._housekeeper is not None:
            self._housekeeper.cancel()
            await asyncio.gather(self._housekeeper, return_exceptions=True)
        if self._sweeper is not None:
            await self._sweeper
        deadline = self.config.drain_timeout if drain_timeout is None else drain_timeout

        in_flight = dict(self._running)
        finished, unfinished = 0, set[asyncio.Task[None]]()
        if in_flight:
            done, unfinished = await asyncio.wait(in_flight, timeout=deadline)
            finished = len(done)
            for job_task in unfinished:
                job_task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)

        cancelled = [in_flight[job_task].id for job_task in unfinished]
        never_started = [job.id for job in self._waiting]
        self._waiting.clear()
        await self._release(cancelled, started=True)
        await self._release(never_started, started=False)
        await self._outcomes.close()
        left = len(cancelled) + len(never_started)
        logger.info(
            "Job runner %s stopped: %d job(s) finished while draining, %d left for the next start",
            self.worker_id,
            finished,
            left,
        )
        await runner_stopped.asend(sender=type(self), runner=self)
        return finished, left

    async def _release(self, job_ids: list[str], *, started: bool) -> None:
        try:
            await runner_threads.run(ledger.release_jobs, self.worker_id, job_ids, started=started)
        except Exception as error:
            logger.error(
                "Could not release %d job(s) (%s); they run again when their leases run out",
                len(job_ids),
                first_line(error),
                extra={"job_ids": job_ids, "reason": first_line(error)},
            )

    # -- jobs handed over in memory ----------------------------------------

    @property
    def held_limit(self) -> int:
        """Jobs this runner holds at most, running or waiting: twice its concurrency.

        Jobs handed over in memory skip the ledger query, so holding a few
        more than can run keeps a burst on that fast path; beyond that they
        wait in the ledger, where another process may claim them.
        """
        return 2 * self.config.concurrency

    def free_slots(self) -> int:
        """Jobs that may start now (loop thread).

        At most TASKS_CONCURRENCY jobs are held running, and of those at most
        the pacer's limit work in the task at once; a job whose task is done
        and whose outcome waits for the next ledger batch takes no work slot.
        """
        work_free = self._pacer.limit - len(self._working)
        return min(self.config.concurrency - len(self._running), work_free)

    @property
    def sweep_batch(self) -> int:
        """Free slots at which a backlog triggers a sweep before the next poll.

        CLAIM_BATCH slots (half of a small runner's): a claim then fetches a
        batch worth its query rather than one job per finished job, and slow
        jobs keep the slots nearly full. Sweeping at half of 64 slots, mails
        to a relay taking 2 s each went out at 25.8/s, at 8 free at 30.3/s;
        a 5,000-job drain at 0 s SMTP was as fast either way.
        """
        return max(1, min(CLAIM_BATCH, self._pacer.limit // 2))

    def _saturated(self) -> bool:
        """The pacer's limit is what holds work back (loop thread)."""
        working = len(self._working)
        return working >= self._pacer.limit and bool(self._waiting or self._backlog)

    def has_room(self) -> bool:
        """Whether a new job should be handed to this runner (any thread; a hint)."""
        return self._accepting and len(self._running) + len(self._waiting) < self.held_limit

    def note_backlog(self) -> None:
        """Due jobs wait in the ledger: sweep again when slots free (any thread)."""
        self._backlog = True

    def hand_over(self, job: Job) -> None:
        """Take a job already claimed for this runner (any thread, after commit)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # The lease runs out and the job is claimed again.
        # An empty context: the job must not inherit the request's context
        # variables, such as its per-request thread for sync_to_async.
        loop.call_soon_threadsafe(self._accept, job, context=contextvars.Context())

    def _accept(self, job: Job) -> None:
        # A signup whose commit came after its job's lease ran out (its
        # database thread was held up) may find the job claimed by a sweep
        # already, here or elsewhere: the ledger decides who runs it then.
        lease = job.lease_expires_at
        if (lease is not None and lease <= timezone.now()) or job.id in self._held_ids():
            return
        self._start_or_hold(job)

    def _start_or_hold(self, job: Job) -> None:
        """Start a job this runner holds if a slot is free; else it waits in memory."""
        if self._accepting and self.free_slots() > 0:
            self._start(job)
        else:
            self._waiting.append(job)

    # -- sweeping the ledger ------------------------------------------------

    def wake(self) -> None:
        """Look at the ledger now rather than at the next poll (loop thread)."""
        self._wake.set()

    def wake_from_thread(self) -> None:
        """Jobs this process made due in the ledger (the admin's "run again now"): sweep now.

        Any thread. On PostgreSQL their NOTIFY wakes every runner anyway; on
        SQLite this one would otherwise wait for its next poll.
        """
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._job_announced, context=contextvars.Context())

    def _job_announced(self) -> None:
        """Another process queued a due job (loop thread, from the wake-up listener).

        Sweep now; with no free slot, sweep again once they free, as for a
        backlog, instead of leaving the job to the next poll.
        """
        self._backlog = True
        self._wake.set()

    def seconds_since_sweep(self) -> float:
        """How long ago a sweep last reached the ledger (any thread; for /healthz)."""
        return time.monotonic() - self.last_sweep_at

    async def _sweep_forever(self) -> None:
        heartbeat_every = self.config.lease_seconds / 3
        next_heartbeat = time.monotonic() + heartbeat_every
        failing_since: float | None = None
        logged_at = 0.0
        while self._accepting:
            try:
                # After a database outage the leases of jobs still held here
                # (sent, their outcome not yet written) may have run out:
                # renew them before claiming, or this runner would take its
                # own jobs for orphans and send them again.
                if failing_since is not None or time.monotonic() >= next_heartbeat:
                    await self._renew_leases()
                    next_heartbeat = time.monotonic() + heartbeat_every
                await self._claim_ready_jobs()
            except Exception as error:
                metrics.SWEEPS_FAILED.inc()
                now = time.monotonic()
                if not isinstance(error, DatabaseUnavailable):
                    logger.exception("Job sweep failed; trying again at the next poll")
                elif failing_since is None:
                    logger.warning("Job sweep failed, database unavailable (%s)", error)
                    logged_at = now
                elif now - logged_at >= SWEEP_FAILURE_LOG_EVERY:
                    logger.error(
                        "Job sweep still failing after %.0f s, database unavailable (%s)",
                        now - failing_since,
                        error,
                    )
                    logged_at = now
                failing_since = failing_since or now
            else:
                metrics.SWEEPS_OK.inc()
                self.last_sweep_at = time.monotonic()
                if failing_since is not None:
                    logger.warning(
                        "Job sweep recovered after %.1f s", self.last_sweep_at - failing_since
                    )
                    failing_since, logged_at = None, 0.0
            try:
                async with asyncio.timeout(self.config.poll_interval):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()

    async def _claim_ready_jobs(self) -> None:
        # A sweep claims only what can start now; the held limit is for
        # hand-overs, which cost no query.
        room = self.free_slots() - len(self._waiting)
        if room <= 0:
            return
        jobs = await runner_threads.run(
            ledger.claim_ready_jobs,
            self.worker_id,
            room,
            self.config.lease_seconds,
            self._held_ids(),
        )
        # A full batch means more are probably due: sweep again as soon as
        # half the slots are free instead of waiting for the next poll.
        self._backlog = len(jobs) == room
        # Jobs handed over while the claim ran may have taken the slots it
        # counted on: the rest wait their turn in memory.
        for job in jobs:
            self._start_or_hold(job)

    def _held_ids(self) -> list[str]:
        return [job.id for job in (*self._running.values(), *self._waiting)]

    async def _renew_leases(self) -> None:
        # Only the jobs this runner still holds in memory: a job it no longer
        # knows of must not stay leased to it forever (it would never run).
        held = self._held_ids()
        if held:
            await runner_threads.run(
                ledger.renew_leases, self.worker_id, held, self.config.lease_seconds
            )

    async def _housekeep_forever(self) -> None:
        # On the runner's own database thread: its batches then never meet the
        # claims in SQLite's busy handler; a call is bounded (well under a second).
        interval = self.config.housekeeping_interval
        await asyncio.sleep(min(interval, FIRST_HOUSEKEEPING_AFTER))
        while True:
            try:
                await runner_threads.run(run_housekeeping)
            except Exception as error:
                logger.warning(
                    "Housekeeping failed (%s); next try in %g s", first_line(error), interval
                )
            await asyncio.sleep(interval)

    # -- running one job ----------------------------------------------------

    def _start(self, job: Job) -> None:
        # Every line logged while the job runs (here, in Django's task signals,
        # in the task itself) says which job and attempt it is about.
        context = job_log_context(job_id=job.id, task=job.task_path, attempt=job.attempts)
        job_task = asyncio.create_task(self._run(job), name=f"job-{job.id}", context=context)
        self._running[job_task] = job  # Strong reference until it is done.
        self._working.add(job_task)
        job_task.add_done_callback(self._on_done)

    def _on_done(self, job_task: asyncio.Task[None]) -> None:
        self._running.pop(job_task, None)
        self._working.discard(job_task)  # Cancelled before it ran, at stop.
        self._start_next()

    def _out_of_task(self) -> None:
        """The current job's task returned or raised: its work slot is free."""
        job_task = asyncio.current_task()
        if job_task in self._working:
            self._working.discard(job_task)
            self._left_task += 1
            self._start_next()

    def _start_next(self) -> None:
        """Slots were freed: start held jobs, or claim more (loop thread)."""
        if not self._accepting:
            return
        free = self.free_slots()
        while self._waiting and free > 0:
            self._start(self._waiting.popleft())
            free -= 1
        if not self._waiting and self._backlog and free >= self.sweep_batch:
            self._backlog = False
            self._wake.set()

    async def _run(self, job: Job) -> None:
        metrics.JOBS_STARTED.labels(job.task_path).inc()
        try:
            try:
                if job.attempts > self.config.max_attempts:
                    raise GaveUp(f"claimed {job.attempts} times, more than MAX_ATTEMPTS")
                await traffic.lull()  # Requests first (background/pacing.py).
                task = load_task(job.task_path)
                result = task_result_for(job, task)
                task_started.send(type(self), task_result=result)
                if task.takes_context:
                    context = TaskContext(task_result=result)
                    value = await task.acall(context, *job.args, **job.kwargs)
                else:
                    value = await task.acall(*job.args, **job.kwargs)
            finally:
                self._out_of_task()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            await self._record_failure(job, error)
        else:
            metrics.JOBS_SUCCEEDED.labels(job.task_path).inc()
            await self._record(ledger.record_success, job, self.worker_id, normalize_json(value))
            self._announce_finished(job)

    async def _record_failure(self, job: Job, error: Exception) -> None:
        retry_at = None
        if is_transient(error) and job.attempts < self.config.max_attempts:
            delay = backoff_delay(
                job.attempts,
                base=self.config.retry_base_delay,
                cap=self.config.retry_max_delay,
            )
            retry_at = timezone.now() + timedelta(seconds=delay)
        (metrics.JOBS_RETRIED if retry_at else metrics.JOBS_FAILED).labels(job.task_path).inc()
        reason = first_line(error)
        logger.warning(
            "Job %s (%s) attempt %d failed: %s; %s",
            job.id,
            job.task_path,
            job.attempts,
            reason,
            f"retrying at {retry_at:%H:%M:%S}" if retry_at else "giving up",
            extra={"reason": reason},
        )
        await self._record(
            ledger.record_failure, job, self.worker_id, _error_record(error), retry_at
        )
        if retry_at is None:
            self._announce_finished(job)

    async def _record(self, write: Any, job: Job, *args: Any) -> None:
        # The writer keeps trying through a database outage; the job holds
        # its slot (and its lease, renewed) until the outcome is written.
        if not await self._outcomes.write(write, job, *args):
            logger.warning("Job %s was taken over by another worker", job.id)

    def _announce_finished(self, job: Job) -> None:
        task_finished.send(type(self), task_result=task_result_for(job))
