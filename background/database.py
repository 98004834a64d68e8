"""Where the service's database calls run: a few threads that own their connections.

Django has no async ORM transactions, so every database call of the service
(a signup's transaction, ``/healthz``, the runner's claims and outcomes, a
task's reads) is a plain sync function run here, on one of three small pools:

- ``request_threads`` for web requests (``SIGNUP_DB_THREADS`` threads),
- ``runner_threads`` for the job runner's ledger queries (one thread, so the
  process's ledger writes never queue behind each other in SQLite's
  sleeping busy handler),
- ``task_threads`` for what tasks read (the account a mail is for).

Each thread keeps its connection for the life of the process: a new thread
and connection per request was ~15 % of the server's CPU at 124 signups/s.
A kept connection can die under it (database restarted, connection killed,
network cut), and Django only notices at request boundaries this code never
crosses; so a thread checks its connection after it sat idle, and closes it
after any failed call. Both happen in the thread that owns the connection:
Django refuses to touch a connection from any other thread, which is how the
runner once ended up unable to close its broken connection and stalled.

Failures that mean "the database is not there right now" (connection errors,
a locked or read-only SQLite file, no answer within ``DATABASE_TIMEOUT``) are
raised as ``DatabaseUnavailable``: the web side answers 503, the runner tries
again at its next sweep.
"""

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from functools import cache, partial
from typing import Any

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connections

logger = logging.getLogger(__name__)

# A connection that sat idle this long is checked (PostgreSQL: one SELECT 1)
# before it is used: under load a connection never idles, so the check costs
# nothing there, and after a quiet spell it turns the first request after a
# dropped connection from a failure into a reconnect.
CHECK_AFTER_IDLE_SECONDS = 1.0


class DatabaseUnavailable(Exception):
    """The database could not be reached, or did not answer in time."""


# The call this thread is running: set once its caller stopped waiting for it.
_current_call = threading.local()


def raise_if_abandoned() -> None:
    """Call last inside a transaction: roll it back if its caller stopped waiting.

    A request that waited ``DATABASE_TIMEOUT`` answers 503, but its call goes
    on in its thread (a thread cannot be stopped) and, once a lock is freed,
    would commit what the client was told failed. Checked just before the
    commit, that leaves only a commit already under way when the answer went.
    """
    abandoned: threading.Event | None = getattr(_current_call, "abandoned", None)
    if abandoned is not None and abandoned.is_set():
        raise DatabaseUnavailable("the caller stopped waiting; rolled back")


def _close_connections(*, only_unusable: bool) -> None:
    """Close this thread's connections (or only those that fail a liveness check)."""
    for connection in connections.all(initialized_only=True):
        if connection.connection is None:
            continue
        if only_unusable and connection.is_usable():
            continue
        # Django forgets the connection even when closing it fails.
        with suppress(DatabaseError):
            connection.close()


# On SQLite, the threads of a pool that writes take turns on this lock for
# each call. Otherwise they meet in SQLite's busy handler, which sleeps 1, 2,
# 5, 10 ... 100 ms between tries and lets a newcomer win: with the runner
# writing outcomes while a backlog drains, a signup waited up to a second.
# Between processes (several workers) the busy handler still decides.
_sqlite_writers = threading.Lock()


@cache  # The database's kind is fixed for the process: not looked up on every call.
def _is_sqlite() -> bool:
    return connections["default"].vendor == "sqlite"


class DatabaseThreads:
    """A named pool of threads that keep their database connections."""

    def __init__(self, name: str, size: Callable[[], int], *, writes: bool = True) -> None:
        self.name = name
        self._size = size
        self._writes = writes
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._local = threading.local()

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._size(), thread_name_prefix=self.name)
            return self._executor

    async def run[T](self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run sync ORM code (one whole transaction at most) on one of these threads.

        Raises ``DatabaseUnavailable`` if the database cannot be reached or
        does not answer within ``DATABASE_TIMEOUT``. The call may still finish
        in its thread after that; a transaction that ends with
        ``raise_if_abandoned()`` then rolls back instead of committing.
        """
        abandoned = threading.Event()
        call = partial(self._call, abandoned, func, *args, **kwargs)
        try:
            async with asyncio.timeout(settings.DATABASE_TIMEOUT):
                return await asyncio.get_running_loop().run_in_executor(self._pool(), call)
        except TimeoutError:
            abandoned.set()
            raise DatabaseUnavailable(f"no answer within {settings.DATABASE_TIMEOUT:g} s") from None

    def _call[T](
        self, abandoned: threading.Event, func: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        """In a pool thread: check an idle connection, run ``func``, drop a broken connection."""
        _current_call.abandoned = abandoned
        now = time.monotonic()
        if now - getattr(self._local, "last_used", now) > CHECK_AFTER_IDLE_SECONDS:
            _close_connections(only_unusable=True)
        self._local.last_used = now
        try:
            if not (self._writes and _is_sqlite()):
                return func(*args, **kwargs)
            if not _sqlite_writers.acquire(timeout=settings.DATABASE_TIMEOUT):
                raise OperationalError("database is locked (by this process's other writers)")
            try:
                return func(*args, **kwargs)
            finally:
                _sqlite_writers.release()
        except DatabaseUnavailable:
            raise  # Rolled back by raise_if_abandoned(): the connection is fine.
        except (OperationalError, InterfaceError) as error:
            _close_connections(only_unusable=False)
            raise DatabaseUnavailable(first_line(error)) from error
        except Exception:
            # Whatever failed, the next call starts from a fresh connection
            # rather than one left in an unknown state.
            _close_connections(only_unusable=False)
            raise


def first_line(error: BaseException) -> str:
    """A one-line reason for logs: the exception's first line, without the traceback."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


request_threads = DatabaseThreads("db-request", lambda: settings.SIGNUP_DB_THREADS)
runner_threads = DatabaseThreads("db-runner", lambda: 1)
# Two: a task's read is one short query, and the mail work around it holds the GIL anyway.
task_threads = DatabaseThreads("db-task", lambda: 2, writes=False)
