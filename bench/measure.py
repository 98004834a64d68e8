"""One open-loop load against a session, with its mails: shared by the latency and sustained phases.

A step's record holds the load's figures (``loadgen.LoadResult.summary``), the
server's CPU and RSS, and for a scenario that sends mail, what became of each
201's mail: delivered or not within the wait, duplicates, time-to-inbox, and
the backlog when the load ended.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .backlog import address
from .loadgen import open_loop
from .procs import Sink
from .session import Session

if TYPE_CHECKING:
    from .run import Run


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of ``values`` (not empty)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil without floats' surprises
    return ordered[int(min(rank, len(ordered))) - 1]


def spread_ms(seconds: list[float]) -> dict[str, float] | None:
    if not seconds:
        return None
    figures = {f"p{p}": percentile(seconds, p) for p in (50, 90, 99, 99.9)}
    figures |= {"min": min(seconds), "max": max(seconds)}
    return {key: round(1000 * value, 2) for key, value in figures.items()}


@dataclass
class Answer:
    status: str
    due: float  # unix time the request was due
    done: float  # unix time its answer arrived


# Called with each answer's status and latency (s, from the due time) as it
# arrives: True once the step's outcome is decided, which ends the load early
# (the requests in flight are still awaited).
StopRule = Callable[[str, float], bool]


async def open_step(
    run: "Run",
    session: Session,
    rate: float,
    seconds: float,
    label: str,
    stop: StopRule | None = None,
) -> dict[str, Any]:
    """``rate`` signups a second for ``seconds`` against ``session``, then their mails."""
    prefix = f"{session.tag}-{label}"
    answers: dict[int, Answer] = {}
    decided = False

    def note(i: int, status: str, due: float, done: float) -> None:
        nonlocal decided
        answers[i] = Answer(status, due, done)
        decided = decided or (stop is not None and stop(status, done - due))

    usage = session.usage()
    result = await open_loop(
        session.url,
        rate,
        seconds,
        lambda i: {"email": address(prefix, i)},
        on_response=note,
        stop=lambda: decided,
        timeout=run.config.request_timeout,
    )
    record: dict[str, Any] = {
        **run.where(session),
        **result.summary(),
        **(await usage.stop()),
    }
    if session.scenario.sends_mail:
        record["mail"] = await mails(run, session, prefix, answers)
    return record


async def mails(
    run: "Run", session: Session, prefix: str, answers: dict[int, Answer]
) -> dict[str, Any]:
    """Wait for the mail of every 201; what arrived, when, and what was owed at the end."""
    sink = session.sink
    assert isinstance(sink, Sink)
    wait = run.config.mail_wait
    expected = {address(prefix, i): a for i, a in answers.items() if a.status == "201"}
    complete = await sink.wait_for(set(expected), wait)
    sink.poll()
    session.dirty = not complete
    arrived = {a: sink.first[a] for a in expected if a in sink.first}
    ended = max((a.done for a in answers.values()), default=0.0)
    stray = [r for r in sink.first if r.startswith(prefix + "-") and r not in expected]
    return {
        "expected": len(expected),
        "delivered": len(arrived),
        "undelivered": len(expected) - len(arrived),
        "waited_s": wait,
        "duplicates": sum(sink.received[a] - 1 for a in arrived),
        "stray": len(stray),  # mails for requests that got no 201
        # Mails owed when the last answer arrived: what the load left behind.
        "backlog_at_end": sum(1 for a in expected if arrived.get(a, ended + 1) > ended),
        # From the answer (after the commit) to the sink's 250: a lower bound
        # of commit-to-250, negative when the mail is sent before the answer.
        "time_to_inbox_ms": spread_ms([t - expected[a].done for a, t in arrived.items()]),
        # From the moment the request was due: an upper bound.
        "due_to_inbox_ms": spread_ms([t - expected[a].due for a, t in arrived.items()]),
    }
