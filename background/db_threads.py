"""The process's database threads: the signup writes and the runner's ledger work run here.

Django runs a view's ``sync_to_async`` code on a new thread per request under
ASGI, and a new thread means a new database connection. Profiled at 124
signups/s, creating those threads and connecting took about 15 % of the
server's CPU, the single biggest item. Signing up needs nothing tied to the
request's thread, so it runs here: a small pool whose threads, and so whose
connections, live as long as the process.

On SQLite the pool is one thread. SQLite has one writer at a time; two
threads of one process that both write wait for each other in SQLite's busy
handler, which sleeps 1, 2, 5, 10 ... ms between tries. One thread takes the
writes in turn instead, with no sleeping.
"""

import atexit
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections

_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(settings.DB_THREADS, thread_name_prefix="db")
        atexit.register(_pool.shutdown)
    return _pool


def _call_keeping_connection[T](func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return func(*args, **kwargs)
    except Exception:
        # After an error (database restarted, network blip) the connection
        # may be dead: drop it, so the next call opens a fresh one.
        connections.close_all()
        raise


async def run_in_db_thread[T](func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run sync ORM code (a whole transaction, if any) on one of the database threads."""
    call = partial(_call_keeping_connection, func, *args, **kwargs)
    return await sync_to_async(call, thread_sensitive=False, executor=_executor())()
