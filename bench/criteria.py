"""What a sustained-rate step must meet, and when its answers already decide that it fails.

No imports beyond the standard library: the checks are tested without a server.
"""

from dataclasses import dataclass
from typing import Any

WRK_OK = "2xx/3xx"  # wrk counts answers below 400 together


def bad_statuses(statuses: dict[str, int]) -> dict[str, int]:
    """5xx answers and requests that got none (exceptions, timeouts; wrk: any error)."""
    return {s: n for s, n in statuses.items() if s != WRK_OK and (not s.isdigit() or int(s) >= 500)}


@dataclass(frozen=True)
class Criteria:
    latency_p99_ms: float = 50.0  # signup, from the request's due time
    inbox_p99_ms: float = 1000.0  # 201 answer to the SMTP sink's 250
    backlog_seconds: float = 1.0  # mails owed when the load ends, in seconds of signups

    def misses(self, step: dict[str, Any]) -> list[str]:
        """Why ``step`` failed; empty if it passed."""
        reasons = []
        if bad := bad_statuses(step["statuses"]):
            reasons.append(f"errors {bad}")
        p99 = step["latency_ms"]["p99"]
        if p99 > self.latency_p99_ms:
            reasons.append(f"signup p99 {p99:g} ms > {self.latency_p99_ms:g}")
        mail = step.get("mail")
        if mail is None:
            return reasons
        if mail["undelivered"]:
            reasons.append(
                f"{mail['undelivered']} of {mail['expected']} mails not delivered "
                f"within {mail['waited_s']:g} s"
            )
        if mail["duplicates"]:
            reasons.append(f"{mail['duplicates']} duplicate mails")
        inbox = (mail["time_to_inbox_ms"] or {}).get("p99")
        if inbox is not None and inbox > self.inbox_p99_ms:
            reasons.append(f"time-to-inbox p99 {inbox:g} ms > {self.inbox_p99_ms:g}")
        allowed = step["target_rate"] * self.backlog_seconds
        if mail["backlog_at_end"] >= allowed:
            reasons.append(
                f"{mail['backlog_at_end']} mails owed when the load ended "
                f">= {allowed:g} ({self.backlog_seconds:g} s of signups)"
            )
        return reasons

    def only_slow(self, step: dict[str, Any]) -> bool:
        """Whether ``step`` failed on time alone (p99s, backlog), which one bad
        minute on a shared machine can cause; errors, lost or duplicate mail never are."""
        mail = step.get("mail") or {}
        return (
            bool(self.misses(step))
            and not bad_statuses(step["statuses"])
            and not mail.get("undelivered")
            and not mail.get("duplicates")
        )


CRITERIA = Criteria()


def slow_allowed(count: int, percentile: float = 99.0) -> int:
    """How many of ``count`` latencies may exceed a limit while the percentile stays within it.

    HdrHistogram's percentile is the value at rank ``int(p / 100 * count + 0.5)``
    (at least 1); what ranks above it does not count. The result never falls
    as ``count`` grows, so once more than ``slow_allowed(planned)`` answers
    are slow, the percentile of any part of the load that includes them fails.
    """
    return count - max(1, int(percentile / 100 * count + 0.5))


class Decided:
    """Tells a step's load to stop once its answers already fail it."""

    def __init__(self, planned: int, criteria: Criteria) -> None:
        self.slow_allowed = slow_allowed(planned)
        self.limit_s = criteria.latency_p99_ms / 1000
        self.slow = 0

    def __call__(self, status: str, latency_s: float) -> bool:
        if bad_statuses({status: 1}):
            return True
        self.slow += latency_s > self.limit_s
        return self.slow > self.slow_allowed
