"""Cross-process wake-up on PostgreSQL: a job queued in another process starts now, not at a poll.

A due job that no runner took in memory is announced with ``NOTIFY`` in the
transaction that wrote it (``ledger.announce_due_jobs``). Each runner keeps one
connection of its own that ``LISTEN``s on that channel and wakes the runner's
sweep on every notification; the sweep coalesces them (a burst of
notifications costs one claim query, plus one if more came during it).

The connection is a ``psycopg.AsyncConnection`` on the runner's event loop,
not on a database thread: it only waits, and ``background.database``'s rule
(a connection is used only by the thread that opened it) holds because the
loop thread is the only one that touches it. It is optional: while it is down
(connection dropped, server restarting) the runner sweeps every poll interval
as it always does, and this module reconnects with backoff, logging once when
it loses the connection and once when it is back.

On SQLite there is no listener; runners find jobs from other processes at
their next poll.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg
from django.conf import settings
from django.db import connections, router
from django.db.backends.base.base import BaseDatabaseWrapper

from .database import first_line
from .ledger import JOBS_CHANNEL
from .models import Job
from .retry import backoff_delay

logger = logging.getLogger(__name__)

# A connection that vanished without closing (network cut, a stalled server)
# would leave the listener deaf, and the runner back at its poll, for good: a
# query this often finds out. One trivial query per process every 10 s.
CHECK_CONNECTION_EVERY = 10.0

# Reconnects back off from this up to RECONNECT_MAX_DELAY seconds, jittered,
# so the processes of a fleet do not all reconnect at the same instant after
# a server restart. Meanwhile the poll picks jobs up.
RECONNECT_BASE_DELAY = 0.5
RECONNECT_MAX_DELAY = 10.0


def connection_params(database: BaseDatabaseWrapper) -> dict[str, Any]:
    """Django's connection parameters for ``database``, for a psycopg connection of our own.

    The same host, credentials, ``connect_timeout``, ``tcp_user_timeout`` and
    any other ``OPTIONS``; without Django's sync cursor class and adapters.
    The application name marks the listener in ``pg_stat_activity``.
    """
    params = database.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    name = params.get("application_name")
    params["application_name"] = f"{name} job wake-up" if name else "job wake-up"
    return params


class WakeupListener:
    """LISTENs for due jobs on a connection of its own and calls ``on_notify`` (loop thread)."""

    def __init__(self, params: dict[str, Any], on_notify: Callable[[], None]) -> None:
        self._params = params
        self._on_notify = on_notify
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start listening in the background; never raises for an unreachable database."""
        self._task = asyncio.create_task(self._listen_forever(), name="job-wakeup")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _listen_forever(self) -> None:
        lost_at: float | None = None
        failures = 0
        while True:
            connection = None
            try:
                # Bounded by the parameters' connect_timeout, as Django's connections are.
                connection = await psycopg.AsyncConnection.connect(**self._params, autocommit=True)
                await _execute_in_time(connection, f"LISTEN {JOBS_CHANNEL}")
                if lost_at is not None:
                    logger.warning(
                        "Listening for jobs queued by other processes again after %.1f s",
                        time.monotonic() - lost_at,
                    )
                    lost_at, failures = None, 0
                # Jobs announced before this connection listened: the next
                # poll would find them, a sweep now costs one query.
                self._on_notify()
                await self._relay(connection)
            except Exception as error:
                if lost_at is None:
                    lost_at = time.monotonic()
                    logger.warning(
                        "Not listening for jobs queued by other processes (%s); "
                        "they start at the next poll until the connection is back",
                        first_line(error),
                    )
                failures += 1
            finally:
                if connection is not None:
                    # Only closes the socket: never waits on a stalled server.
                    await connection.close()
            await asyncio.sleep(
                backoff_delay(failures, base=RECONNECT_BASE_DELAY, cap=RECONNECT_MAX_DELAY)
            )

    async def _relay(self, connection: psycopg.AsyncConnection[Any]) -> None:
        """Wake the runner on each notification until the connection fails (then raise)."""
        while True:
            async for _ in connection.notifies(timeout=CHECK_CONNECTION_EVERY):
                self._on_notify()
            await _execute_in_time(connection, "SELECT 1")


async def _execute_in_time(connection: psycopg.AsyncConnection[Any], statement: str) -> None:
    """Run ``statement``; without an answer within ``DATABASE_TIMEOUT``, close and raise.

    The connection is closed before the query is cancelled: psycopg answers
    the cancellation of a running query by asking the server to cancel it,
    over a new connection, for up to 10 s, with a warning in the log each
    time: pointless for a connection that is dropped anyway.
    """
    query = asyncio.ensure_future(connection.execute(statement))
    try:
        done, _ = await asyncio.wait({query}, timeout=settings.DATABASE_TIMEOUT)
        if not done:
            await connection.close()
            raise TimeoutError(f"no answer within {settings.DATABASE_TIMEOUT:g} s")
        query.result()
    finally:
        if not query.done():
            query.cancel()
            await asyncio.gather(query, return_exceptions=True)


def listener_for(on_notify: Callable[[], None]) -> WakeupListener | None:
    """A listener on the ledger's database if it is PostgreSQL, else None (poll only)."""
    # A wrapper of our own: it never connects, and leaves the loop thread's
    # Django connections alone.
    database = connections.create_connection(router.db_for_write(Job))
    if database.vendor != "postgresql":
        return None
    return WakeupListener(connection_params(database), on_notify)
