"""ASGI lifespan: start the job runner with the server, drain it on shutdown."""

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from django.tasks import task_backends

from .backend import LedgerBackend
from .database import DatabaseUnavailable, first_line
from .ledger import LedgerNotReady
from .pacing import traffic
from .runner import JobRunner

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def runner_for_backend(alias: str = "default") -> JobRunner | None:
    """A runner for the TASKS backend ``alias``, or None if jobs run elsewhere (Celery, ...)."""
    backend = task_backends[alias]
    if not isinstance(backend, LedgerBackend):
        return None
    return JobRunner(backend.runner_config)


def with_job_runner(app: ASGIApp) -> ASGIApp:
    """Wrap ``app`` so the server's lifespan events start and drain the runner.

    A runner that cannot start (database down, not migrated) fails the
    startup, so the server exits instead of taking signups it cannot send.
    """

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # The runner yields the loop to requests (background/pacing.py).
            traffic.request_started()
            try:
                await app(scope, receive, send)
            finally:
                traffic.request_finished()
            return
        if scope["type"] != "lifespan":
            # Not counted: a long-lived connection would count as load forever.
            await app(scope, receive, send)
            return
        runner = runner_for_backend()
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if runner is not None:
                        await runner.start()
                except Exception as error:
                    # The cause goes last, where an operator reading the
                    # end of the log looks (uvicorn prints the message).
                    if isinstance(error, (DatabaseUnavailable, LedgerNotReady)):
                        reason = str(error)
                    else:
                        logger.exception("Job runner failed to start")
                        reason = first_line(error)
                    reason = f"Job runner failed to start: {reason}"
                    await send({"type": "lifespan.startup.failed", "message": reason})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if runner is not None:
                    await runner.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    return application
