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
