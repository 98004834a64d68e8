"""Keep the threads that Django's sync code uses during a request, for later requests.

Django's ASGI handler gives every request its own ``ThreadSensitiveContext``.
asgiref starts a new thread at that context's first thread-sensitive call and
joins it when the request ends. Every request makes such calls: the
``request_started`` and ``request_finished`` receivers (``close_old_connections``
and others) and ``response.close()`` run through ``sync_to_async``. Async views
like the signup view get no thread-free path. So every signup started two
threads from the event loop (the executor's, and at the end one that joins
it), and the loop stood still until each had started: 27 % of the loop
thread's busy samples at 75 signups/s (py-spy), half of them in that wait.

This wrapper enters the context first and gives it an executor from a free
list. asgiref (3.13) then treats Django's own ``ThreadSensitiveContext`` as a
nested context, which does nothing. A request still has one thread to itself,
and its sync code runs there one call at a time, so what Django relies on is
kept. Only the thread is reused, as a WSGI server's thread pool reuses
threads. Django's ``close_old_connections`` still runs on that thread when a
request starts and when it ends, so a sync view's database connection closes
or stays open by ``CONN_MAX_AGE``, as it would under WSGI.
"""

from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext

from .body_limit import ASGIApp, Receive, Scope, Send

# Idle one-thread executors kept for the next requests. Concurrent requests
# past this take new ones; those beyond it are shut down when their request ends.
KEEP_IDLE = 32


class RequestThreads:
    """A free list of one-thread executors, one per request in flight."""

    def __init__(self, keep_idle: int = KEEP_IDLE) -> None:
        self.keep_idle = keep_idle
        self._idle: list[ThreadPoolExecutor] = []

    @property
    def idle(self) -> int:
        return len(self._idle)

    def take(self) -> ThreadPoolExecutor:
        if self._idle:
            return self._idle.pop()
        # One worker: a request's sync calls run in order on one thread, as
        # Django's thread-sensitive mode needs. Its thread starts on first use.
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")

    def give_back(self, executor: ThreadPoolExecutor) -> None:
        # A sync call left running by a cancelled request finishes before the
        # next request's first call on this thread: later, never at once.
        if len(self._idle) < self.keep_idle:
            self._idle.append(executor)
        else:
            executor.shutdown(wait=False)


def with_request_threads(app: ASGIApp, threads: RequestThreads | None = None) -> ASGIApp:
    """Wrap Django's ASGI ``app`` so its requests reuse their sync threads."""
    pool = threads if threads is not None else RequestThreads()

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        executor = pool.take()
        try:
            async with ThreadSensitiveContext(executor=executor):
                await app(scope, receive, send)
        finally:
            pool.give_back(executor)

    return application
