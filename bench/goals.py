"""The issue's goals as data: a name, the measured expression, and its threshold.

Each figure is a small expression over a run's results (``Sustained``,
``Latency``, ``Ratio``, ...) that prints as what it computes, so the report
shows how every value was obtained; a figure the run did not measure is None
and its goal "n/a".
"""

import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from .criteria import Criteria
from .scenarios import PEERS

Results = dict[str, Any]

# The shapes the goals name: the reference (one process on SQLite, as in
# every earlier run) and the production shape.
REFERENCE = "sqlite-w1"
PRODUCTION = "postgres-w2"
HALF = 0.5  # of the project's sustained rate, for the latency goals


class Figure(Protocol):
    def __call__(self, results: Results) -> float | None: ...


def find_row(rows: Iterable[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    """The first of ``rows`` whose fields equal ``match``, or None."""
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


@dataclass(frozen=True)
class Sustained:
    scenario: str
    shape: str

    def __call__(self, results: Results) -> float | None:
        row = find_row(results.get("sustained", []), scenario=self.scenario, shape=self.shape)
        return row["rate"] if row else None

    def __str__(self) -> str:
        return f"sustained({self.scenario}, {self.shape})"


@dataclass(frozen=True)
class Latency:
    """A signup latency percentile (ms) in the latency phase."""

    scenario: str
    shape: str
    key: str  # "p50", "p99", ...
    fraction: float = HALF
    smtp_delay: float = 0.0

    def __call__(self, results: Results) -> float | None:
        row = self._row(results)
        return row["latency_ms"][self.key] if row else None

    def _row(self, results: Results) -> dict[str, Any] | None:
        return find_row(
            results.get("latency", []),
            scenario=self.scenario,
            shape=self.shape,
            fraction=self.fraction,
            smtp_delay=self.smtp_delay,
        )

    def __str__(self) -> str:
        return (
            f"{self.key}({self.scenario}, {self.shape}, {self.fraction:g} x project's "
            f"sustained, SMTP {self.smtp_delay:g} s)"
        )


@dataclass(frozen=True)
class Inbox(Latency):
    """A time-to-inbox percentile (ms) in the latency phase."""

    def __call__(self, results: Results) -> float | None:
        row = self._row(results)
        spread = ((row or {}).get("mail") or {}).get("time_to_inbox_ms")
        return spread[self.key] if spread else None

    def __str__(self) -> str:
        return "time-to-inbox " + super().__str__()


@dataclass(frozen=True)
class Drain:
    """Mails/s from the first to the last arrival, into the harness's sink."""

    scenario: str
    shape: str
    smtp_delay: float = 0.0
    per_process: bool = False

    def __call__(self, results: Results) -> float | None:
        row = find_row(
            results.get("drain", []),
            scenario=self.scenario,
            shape=self.shape,
            smtp_delay=self.smtp_delay,
            sink="bench",
        )
        key = "mails_per_s_per_process" if self.per_process else "mails_per_s"
        return row[key] if row else None

    def __str__(self) -> str:
        unit = "mails/s per process" if self.per_process else "mails/s"
        return f"drain {unit}({self.scenario}, {self.shape}, SMTP {self.smtp_delay:g} s)"


@dataclass(frozen=True)
class Recovery:
    """A signup latency percentile (ms) while a queued backlog drains."""

    shape: str
    key: str

    def __call__(self, results: Results) -> float | None:
        row = find_row(results.get("recovery", []), scenario="project", shape=self.shape)
        return row["latency_ms"][self.key] if row else None

    def __str__(self) -> str:
        return f"{self.key}(project, {self.shape}, half its sustained rate, backlog draining)"


@dataclass(frozen=True)
class RSSGrowth:
    """The server's peak RSS with the largest backlog / with the smallest."""

    shape: str

    def __call__(self, results: Results) -> float | None:
        row = find_row(results.get("memory", []), scenario="project", shape=self.shape)
        backlogs = sorted((row or {}).get("backlogs", {}).items(), key=lambda kv: int(kv[0]))
        if len(backlogs) < 2:
            return None
        (_, small), (_, large) = backlogs[0], backlogs[-1]
        return _divide(large["server"]["rss_peak_mb"], small["server"]["rss_peak_mb"])

    def __str__(self) -> str:
        return f"project server RSS peak, largest / smallest backlog ({self.shape})"


@dataclass(frozen=True)
class Pickup:
    mode: str
    key: str

    def __call__(self, results: Results) -> float | None:
        row = find_row(results.get("pickup", []), mode=self.mode)
        return (row["pickup_ms"] or {}).get(self.key) if row else None

    def __str__(self) -> str:
        return f"pickup {self.key} ms ({self.mode}, PostgreSQL)"


@dataclass(frozen=True)
class Best:
    """The highest of some figures (the best peer's), ignoring those not measured."""

    figures: tuple[Figure, ...]
    label: str

    def __call__(self, results: Results) -> float | None:
        values = [v for v in (f(results) for f in self.figures) if v is not None]
        return max(values) if values else None

    def __str__(self) -> str:
        return self.label


@dataclass(frozen=True)
class Ratio:
    numerator: Figure
    denominator: Figure

    def __call__(self, results: Results) -> float | None:
        return _divide(self.numerator(results), self.denominator(results))

    def __str__(self) -> str:
        return f"{self.numerator} / {self.denominator}"


def _divide(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


COMPARISONS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le}


@dataclass(frozen=True)
class Goal:
    name: str
    figure: Figure
    comparison: str  # ">=" or "<="
    threshold: float

    def evaluate(self, results: Results) -> dict[str, Any]:
        value = self.figure(results)
        met = None if value is None else COMPARISONS[self.comparison](value, self.threshold)
        return {
            "goal": self.name,
            "measured": str(self.figure),
            "value": value,
            "target": f"{self.comparison} {self.threshold:g}",
            "met": met,
        }


def _best_peer(figure: Callable[[str], Figure], label: str) -> Best:
    return Best(tuple(figure(peer) for peer in PEERS), label)


def _shape_goals(shape: str) -> list[Goal]:
    sustained = Sustained("project", shape)
    best_peer = _best_peer(lambda peer: Sustained(peer, shape), f"best peer's sustained ({shape})")
    return [
        Goal(
            f"project sustained rate >= 0.6 x the floor's ({shape})",
            Ratio(sustained, Sustained("floor", shape)),
            ">=",
            0.6,
        ),
        Goal(
            f"project sustained rate >= 1.5 x the best peer's ({shape})",
            Ratio(sustained, best_peer),
            ">=",
            1.5,
        ),
        Goal(
            f"at half the project's sustained rate: p50 <= 1.3 x the floor's ({shape})",
            Ratio(Latency("project", shape, "p50"), Latency("floor", shape, "p50")),
            "<=",
            1.3,
        ),
        Goal(
            f"at half the project's sustained rate: time-to-inbox p99 <= 25 ms ({shape})",
            Inbox("project", shape, "p99"),
            "<=",
            25,
        ),
        # Not one of the issue's numbers: its "keep mail work from starving
        # the requests", held to the sustained rate's own signup criterion.
        Goal(
            f"while a queued backlog drains: signup p99 <= "
            f"{Criteria.latency_p99_ms:g} ms ({shape})",
            Recovery(shape, "p99"),
            "<=",
            Criteria.latency_p99_ms,
        ),
    ]


GOALS: list[Goal] = [
    *_shape_goals(REFERENCE),
    *_shape_goals(PRODUCTION),
    Goal(
        f"2 s SMTP, default settings: >= 25 mails/s per process ({REFERENCE})",
        Drain("project", REFERENCE, smtp_delay=2.0, per_process=True),
        ">=",
        25,
    ),
    Goal(
        f"2 s SMTP: signup p99 unchanged, <= 1.1 x at 0 s ({REFERENCE})",
        Ratio(
            Latency("project", REFERENCE, "p99", smtp_delay=2.0),
            Latency("project", REFERENCE, "p99"),
        ),
        "<=",
        1.1,
    ),
    Goal(
        "pickup from another process on PostgreSQL: p99 <= 20 ms",
        Pickup("wake-up", "p99"),
        "<=",
        20,
    ),
    Goal(
        f"drain rate >= 1.5 x the best peer's ({REFERENCE})",
        Ratio(
            Drain("project", REFERENCE),
            _best_peer(lambda peer: Drain(peer, REFERENCE), f"best peer's drain ({REFERENCE})"),
        ),
        ">=",
        1.5,
    ),
    Goal(
        f"memory flat: server RSS with 100,000 queued <= 1.1 x with 1,000 ({REFERENCE})",
        RSSGrowth(REFERENCE),
        "<=",
        1.1,
    ),
]


def evaluate(results: Results) -> list[dict[str, Any]]:
    return [goal.evaluate(results) for goal in GOALS]
