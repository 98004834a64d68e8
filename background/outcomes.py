"""Writes the outcomes of finished attempts to the ledger, many in one transaction.

Every finished job ends with a conditional UPDATE. One transaction (and one
hop to the database thread) per job made the outcome writes queue on SQLite's
write lock behind the web requests' transactions. Here, outcomes that arrive
while a batch is being written wait for the next batch: at low load a batch
is a single outcome, written at once; under load, one transaction carries
many.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from . import ledger

Write = Callable[..., bool]


class OutcomeWriter:
    def __init__(self, run_in_db: Callable[..., Awaitable[Any]]) -> None:
        self._run_in_db = run_in_db
        self._pending: list[tuple[Write, tuple[Any, ...], asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def write(self, write: Write, *args: Any) -> bool:
        """Run ``write(*args)`` in the next batch; its result (False: the lease was lost)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((write, args, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="job-outcomes")
        return await future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                results = await self._run_in_db(
                    ledger.write_outcomes, [(write, args) for write, args, _ in batch]
                )
            except Exception as error:
                # The whole transaction rolled back: every writer sees the error.
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(error)
            else:
                for (*_, future), result in zip(batch, results, strict=True):
                    if not future.done():  # Its waiter may have been cancelled.
                        future.set_result(result)
