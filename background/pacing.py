"""How much room jobs take on the event loop: as much as the requests leave them.

Jobs share the event loop (and the GIL) with the web requests. A slow relay
leaves the loop idle, so all TASKS_CONCURRENCY slots pay; a fast relay and a
backlog keep it busy, and every request then waits its turn behind dozens of
SMTP conversations. So while requests come in, the number of jobs in their
task follows the loop's lag, measured by a timer: it grows while the loop
keeps up and halves when it falls behind, down to FLOOR. With no request to
protect, a busy loop is the drain going at full speed, and the limit grows.

Measured with 10,000 mails queued and signups at 91/s (bench recovery
phase, one process): on PostgreSQL signup p50 33 -> 17 ms and p99 61 -> 46
ms, while the backlog went out at ~155 mails/s instead of ~545 during the
load. A lower LAG_LIMIT or FLOOR protected the requests more and starved
the mail more (1 ms: p99 19 ms on SQLite at ~200 mails/s).

Besides, a job starts its work only in a lull: when no request of this
process is in flight (``Traffic.lull``), or after LULL_LONGEST at most. A
request then shares the loop and the GIL only with jobs that started before
it came in, not with those handed over while it runs. One waiting job goes
per loop turn, so a request that comes in meanwhile holds the others back.
Measured on SQLite, one process, checkouts taking turns (runs with under 3 %
steal): with 10,000 mails queued and signups at 80/s, p50 35-41 -> 16-22 ms
and p99 107-155 -> 49-93 ms, the backlog going out as fast as before; at
95 signups/s with nothing queued, p99 15-149 (median 57) -> 15-46 (29) ms.
"""

import asyncio
from collections import deque
from collections.abc import Callable
from contextlib import suppress

from asgi_project import metrics

# A timer this often measures the loop's lag: a hundred cheap wake-ups a second.
TICK = 0.01
# The limit moves once per window of this many ticks, on their mean lag, so
# one late tick (a GIL hand-over takes up to 5 ms) does not halve it.
WINDOW = 5
# A mean lag above this, with requests coming in, halves the limit.
LAG_LIMIT = 0.002
# Never below this many jobs working, so mail moves however busy the web side is.
FLOOR = 8
# Jobs that take this long (s) mostly wait on their relay and cost the loop
# little: with them, the lag comes from the requests themselves, and fewer
# jobs would only slow the mail (a 2 s relay at FLOOR slots: 4 mails/s).
WAITING_JOB = 0.1
# A job waits at most this long (s) for a lull, so steady traffic delays the
# mail without starving it. Short, because the time-to-inbox at half the
# sustained rate is meant to stay under 25 ms; the answer never waits for it.
LULL_LONGEST = 0.02


class Traffic:
    """Web requests of this process, counted by the ASGI wrapper (loop thread)."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.started = 0
        self._lull_waiters: deque[asyncio.Future[None]] = deque()

    def request_started(self) -> None:
        self.in_flight += 1
        self.started += 1

    def request_finished(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._release_one()

    async def lull(self) -> None:
        """Wait until no request is in flight, LULL_LONGEST at most (loop thread)."""
        if self.in_flight == 0 and not self._lull_waiters:
            return
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._lull_waiters.append(waiter)
        if self.in_flight == 0:  # Others wait already: take the turn after theirs.
            loop.call_soon(self._release_if_quiet)
        # A timeout or a cancellation cancels the waiter: _release_one skips it.
        with suppress(TimeoutError):
            async with asyncio.timeout(LULL_LONGEST):  # Read now: tests change it.
                await waiter

    def _release_one(self) -> None:
        while self._lull_waiters:
            waiter = self._lull_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                # The next one goes on the next loop turn, after the loop has
                # read (and counted) any request that came in meanwhile.
                if self._lull_waiters:
                    waiter.get_loop().call_soon(self._release_if_quiet)
                return

    def _release_if_quiet(self) -> None:
        if self.in_flight == 0:
            self._release_one()


traffic = Traffic()


class LoopPacer:
    def __init__(
        self,
        ceiling: int,
        *,
        saturated: Callable[[], bool],
        raised: Callable[[], None],
        working: Callable[[], int],
        finished: Callable[[], int],
    ) -> None:
        self.ceiling = ceiling
        self.limit = ceiling
        self._saturated = saturated  # Every slot the limit allows is working, more wait.
        self._raised = raised  # The limit went up: start what waits.
        self._working = working  # Jobs in their task now.
        self._finished = finished  # Jobs that left their task, ever (a counter).
        self._finished_seen = 0
        self._task: asyncio.Task[None] | None = None
        self._requests_seen = traffic.started

    def start(self) -> None:
        metrics.JOBS_WORK_LIMIT.inc(self.limit)
        if self.ceiling > FLOOR:
            self._task = asyncio.create_task(self._measure_forever(), name="job-pacer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        metrics.JOBS_WORK_LIMIT.dec(self.limit)

    async def _measure_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            lag = 0.0
            for _ in range(WINDOW):
                before = loop.time()
                await asyncio.sleep(TICK)
                lag += loop.time() - before - TICK
            self.observe(lag / WINDOW)

    def observe(self, mean_lag: float) -> None:
        """Adjust the limit to one window's mean lag (s)."""
        requests = traffic.in_flight > 0 or traffic.started != self._requests_seen
        self._requests_seen = traffic.started
        finished_ever = self._finished()
        finished, self._finished_seen = finished_ever - self._finished_seen, finished_ever
        # Little's law: the mean time a job spends in its task.
        job_seconds = self._working() * WINDOW * TICK / max(1, finished)
        if requests and mean_lag > LAG_LIMIT and job_seconds < WAITING_JOB:
            self._set_limit(max(FLOOR, self.limit // 2))
        elif self.limit < self.ceiling and self._saturated():
            self._set_limit(min(self.ceiling, self.limit + max(1, self.limit // 4)))
            self._raised()

    def _set_limit(self, limit: int) -> None:
        # inc/dec, not set: several runners in one process (tests) add up.
        metrics.JOBS_WORK_LIMIT.inc(limit - self.limit)
        self.limit = limit
