"""When a failed job runs again, and whether it should."""

import random


def is_transient(error: BaseException) -> bool:
    """A failure is worth retrying unless the exception says otherwise.

    Exceptions opt out with a ``transient = False`` attribute (the mail
    transport does for 5xx answers). Anything unknown is retried, because a
    bug fixed by the next deploy should not have cost the mail.
    """
    return bool(getattr(error, "transient", True))


def backoff_delay(attempt: int, *, base: float, cap: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    Exponential, with jitter between half and all of that delay, so jobs
    that failed together during an outage do not all come back at once.
    """
    ceiling = min(cap, base * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)
