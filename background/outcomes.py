"""Writes the outcomes of finished attempts to the ledger, many in one transaction.

Every finished job ends with a conditional UPDATE. One transaction (and one
hop to the database thread) per job made the outcome writes queue on SQLite's
write lock behind the web requests' transactions. Here, outcomes that arrive
while a batch is being written wait for the next batch: at low load a batch
is a single outcome, written at once; under load, one transaction carries
many.
"""

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from . import ledger
from .database import first_line

logger = logging.getLogger(__name__)

Write = Callable[..., bool]

# Pauses between tries of a batch the database refused: quick at first (a
# dropped connection is replaced at once), then every few seconds for as long
# as an outage lasts. An outcome not written makes its job run again once the
# lease runs out, a duplicate mail: so it is never given up while the process
# lives.
RETRY_PAUSES = (0.1, 0.5, 1.0, 2.0, 5.0)
# At most one outcome transaction this often: under load the outcomes of this
# interval go in one, so the runner takes SQLite's write lock a few dozen
# times a second rather than once per mail, while a job that finishes after
# a quiet spell is written at once.
MIN_FLUSH_INTERVAL = 0.02
FAILURE_LOG_EVERY = 12  # Failed tries: about once a minute at the longest pause.


class OutcomeWriter:
    def __init__(self, run_in_db: Callable[..., Awaitable[Any]]) -> None:
        self._run_in_db = run_in_db
        self._pending: list[tuple[Write, tuple[Any, ...], asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._last_flush = -MIN_FLUSH_INTERVAL  # loop time a batch was last sent

    async def write(self, write: Write, *args: Any) -> bool:
        """Run ``write(*args)`` in the next batch; its result (False: the lease was lost).

        Waits, through failures, until the batch is written.
        """
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((write, args, future))
        if self._flusher is None or self._flusher.done():
            # Its own context: it writes many jobs' outcomes, and must not log
            # as the job whose write happened to start it (asgi_project/logs.py).
            self._flusher = asyncio.create_task(
                self._flush(), name="job-outcomes", context=contextvars.Context()
            )
        return await future

    async def _flush(self) -> None:
        failures = 0
        loop = asyncio.get_running_loop()
        while self._pending:
            wait = self._last_flush + MIN_FLUSH_INTERVAL - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last_flush = loop.time()
            # Writers cancelled while waiting (a drain ran out of time) leave
            # their jobs to the lease.
            batch = [entry for entry in self._pending if not entry[2].done()]
            self._pending = []
            try:
                results = await self._run_in_db(
                    ledger.write_outcomes, [(write, args) for write, args, _ in batch]
                )
            except Exception as error:
                # The whole transaction rolled back: try it again, with
                # whatever arrived meanwhile.
                self._pending = batch + self._pending
                if failures % FAILURE_LOG_EVERY == 0:
                    logger.warning(
                        "Could not write %d job outcome(s) (%s); retrying until it works",
                        len(batch),
                        first_line(error),
                        extra={"reason": first_line(error)},
                    )
                await asyncio.sleep(RETRY_PAUSES[min(failures, len(RETRY_PAUSES) - 1)])
                failures += 1
                continue
            if failures:
                logger.warning("Job outcomes written again after %d failed tries", failures)
                failures = 0
            for (*_, future), result in zip(batch, results, strict=True):
                if not future.done():  # Its waiter may have been cancelled.
                    future.set_result(result)

    async def close(self) -> None:
        """Stop trying (the runner has stopped); unwritten outcomes are left to the leases."""
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        for *_, future in self._pending:
            future.cancel()
        self._pending = []
