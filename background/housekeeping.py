"""Deletes what the service no longer needs, a bounded amount per call.

``run_housekeeping`` is synchronous database code: the runner calls it from
its database thread every few minutes, so nobody has to remember a cron job.
It prunes the ledger, then sends ``housekeeping`` so other apps prune their
own tables (``signup.retention``) without this module knowing them.

Each DELETE removes at most ``BATCH_SIZE`` rows in its own transaction, so the
write lock (all of SQLite's database) is held for one batch at a time; each
kind gets at most ``MAX_BATCHES`` batches per call, so one call never keeps the
caller's thread long. What is left over goes in the next call.
"""

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import Error as DatabaseError
from django.dispatch import Signal
from django.utils import timezone

from . import ledger

logger = logging.getLogger(__name__)

# One batch of 500 holds SQLite's write lock for 13-60 ms (jobs) or ~55 ms
# (accounts, with their group and permission links), measured with 100,000
# jobs, so a signup waits at most that long behind it. 10 batches bound a call
# to 5,000 rows of each kind (under a second), while a call every few minutes
# still removes over a million rows a day.
BATCH_SIZE = 500
MAX_BATCHES = 10

# Sent by run_housekeeping after the ledger is pruned. Receivers take
# ``batch_size`` and ``max_batches`` (keywords; pass them to
# ``delete_in_batches``) and return ``{kind: rows deleted}``.
housekeeping = Signal()


def delete_in_batches(
    delete_batch: Callable[[int], int], *, batch_size: int, max_batches: int
) -> int:
    """Call ``delete_batch(batch_size)`` until a batch comes back short, ``max_batches`` at most."""
    deleted = 0
    for _ in range(max_batches):
        count = delete_batch(batch_size)
        deleted += count
        if count < batch_size:
            break
    return deleted


def run_housekeeping(
    *, batch_size: int = BATCH_SIZE, max_batches: int = MAX_BATCHES
) -> dict[str, int]:
    """Delete expired rows; return how many of each kind, e.g. ``{"finished_jobs": 500, ...}``.

    Call it outside any transaction (each batch commits on its own). A count
    of ``batch_size * max_batches`` means more may be left. A receiver that
    fails is logged and the others still run; a database error is raised once
    all have had their turn, so the caller can discard a broken connection.
    """
    counts = {"finished_jobs": 0}
    if settings.TASKS_RESULT_RETENTION is not None:
        finished_before = timezone.now() - settings.TASKS_RESULT_RETENTION
        counts["finished_jobs"] = delete_in_batches(
            lambda limit: ledger.delete_finished_jobs(finished_before, limit),
            batch_size=batch_size,
            max_batches=max_batches,
        )
    database_error: DatabaseError | None = None
    replies = housekeeping.send_robust(None, batch_size=batch_size, max_batches=max_batches)
    for receiver, reply in replies:
        if isinstance(reply, Exception):
            logger.error("Housekeeping by %r failed", receiver, exc_info=reply)
            if isinstance(reply, DatabaseError) and database_error is None:
                database_error = reply
        else:
            counts.update(reply)
    if any(counts.values()):
        logger.info(
            "Housekeeping deleted %s", ", ".join(f"{n} {kind}" for kind, n in counts.items())
        )
    if database_error is not None:
        raise database_error
    return counts
