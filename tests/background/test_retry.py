"""When a failed job runs again (``background/retry.py``)."""

import pytest

from background.retry import backoff_delay, is_transient


def test_backoff_grows_exponentially_up_to_its_cap() -> None:
    ceilings = [max(backoff_delay(n, base=1, cap=60) for _ in range(200)) for n in (1, 3, 5, 9)]
    assert ceilings[0] <= 1 < ceilings[1] <= 4 < ceilings[2] <= 16 < ceilings[3] <= 60
    assert all(backoff_delay(n, base=1, cap=60) >= 0.5 for n in range(1, 10))


def test_backoff_is_jittered_between_half_and_all_of_its_ceiling() -> None:
    delays = [backoff_delay(4, base=2, cap=3600) for _ in range(200)]
    assert all(8 <= delay <= 16 for delay in delays)
    assert len(set(delays)) > 100  # Jobs that failed together come back apart.


class Refused(Exception):
    def __init__(self, transient: bool) -> None:
        self.transient = transient


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (Refused(transient=True), True),
        (Refused(transient=False), False),
        (RuntimeError("a bug the next deploy fixes"), True),
    ],
)
def test_only_errors_that_say_so_are_not_retried(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient
