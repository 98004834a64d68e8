"""Where the signup view's database work runs: a few threads that keep their connections.

Django runs a view's ``sync_to_async`` code on a new thread per request under
ASGI, and a new thread means a new database connection. Profiled at 124
signups/s, creating those threads and connecting took about 15 % of the
server's CPU, the single biggest item. Signing up needs nothing tied to the
request's thread, so it runs here: a small pool whose threads, and so whose
connections, live as long as the process.
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
        _pool = ThreadPoolExecutor(settings.SIGNUP_DB_THREADS, thread_name_prefix="signup-db")
        atexit.register(_pool.shutdown)
    return _pool


def _call_keeping_connection[T](func: Callable[..., T], *args: Any) -> T:
    try:
        return func(*args)
    except Exception:
        # After an error (database restarted, network blip) the connection
        # may be dead: drop it, so the next call opens a fresh one.
        connections.close_all()
        raise


async def run_in_db_thread[T](func: Callable[..., T], *args: Any) -> T:
    """Run sync ORM code (one whole transaction) on a pooled thread."""
    call = partial(_call_keeping_connection, func, *args)
    return await sync_to_async(call, thread_sensitive=False, executor=_executor())()
