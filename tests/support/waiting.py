"""Waiting for an outcome in sync tests, with a deadline, instead of sleeping a fixed time."""

import time
from collections.abc import Callable


def wait_until[T](condition: Callable[[], T | None], what: str, timeout: float = 20.0) -> T:
    """``condition()``'s first truthy value; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.05)
    return value


def clear_of_a_rate_window_edge(needed: float = 10.0) -> None:
    """Sleep into the next minute if this one ends within ``needed`` seconds.

    Rate limits count hits per fixed window aligned to the epoch
    (``signup.ratelimit``), so hits straddling an edge are split between two
    counts and an expected 429 turns into a 201. Minute edges include every
    hour and day edge, so this covers every period a test uses.
    """
    left = 60 - time.time() % 60
    if left < needed:
        time.sleep(left + 0.05)
