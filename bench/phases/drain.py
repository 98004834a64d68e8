"""Drain rate: a backlog queued with nothing running, then the worker and uvicorn started.

``--drain`` (10,000) mails are queued through the scenario's own ``TASKS``
backend (``bench/backlog.py``); mails/s from the first to the last arrival,
and from the start. Into the harness's sink (the same for every scenario: the
figure the goals compare) and into postfix's ``smtp-sink`` when installed
(written in C, it only counts: the raw delivery speed, where the sink's own
CPU no longer competes with the server).

Then the slow relay, the product only: ``--relay-mails`` (600) into a sink
that answers every mail after ``--relay-delay`` (2 s), with default settings;
the goal is per process, so the record has mails/s per uvicorn worker. (A
peer's figure is no goal, and django-tasks-db, one mail at a time, would take
20 minutes.)
"""

import asyncio
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from ..procs import PostfixSink, Sink
from ..scenarios import Scenario, Shape
from ..session import Session

if TYPE_CHECKING:
    from ..run import Run

RELAY_SCENARIOS = ("project",)


def applies(scenario: Scenario, shape: Shape) -> bool:
    return scenario.queues


async def run(run: "Run", shape: Shape, scenarios: list[Scenario]) -> None:
    config = run.config
    for scenario in scenarios:
        if config.drain_count > 0:
            for sink in config.drain_sinks:
                drain = partial(_drain, run, scenario, shape, sink, 0.0, config.drain_count)
                await run.guarded(scenario, shape, drain)
        if scenario.name in RELAY_SCENARIOS and config.relay_count > 0:
            relay = partial(
                _drain, run, scenario, shape, "bench", config.relay_delay, config.relay_count
            )
            await run.guarded(scenario, shape, relay)


async def _drain(
    run: "Run", scenario: Scenario, shape: Shape, sink_kind: str, delay: float, count: int
) -> None:
    timeout = run.config.drain_timeout
    async with Session(
        run, scenario, shape, smtp_delay=delay, sink=sink_kind, backlog=count
    ) as session:
        usage = session.usage()
        first, last, delivered = await _arrivals(session.sink, count, timeout)
        used = await usage.stop()
        duplicates = (
            sum(n - 1 for n in session.sink.received.values())
            if isinstance(session.sink, Sink)
            else None
        )
    began = session.started_at
    span = last - first if first is not None and last is not None else 0.0
    rate = round((delivered - 1) / span, 1) if span else None
    record: dict[str, Any] = {
        **run.where(session),
        "sink": sink_kind,
        "queued": count,
        "enqueue_seconds": round(session.enqueue_seconds, 2),
        "delivered": delivered,
        "complete": delivered >= count,
        "seconds_from_start": round(last - began, 2) if last else None,
        "seconds_first_to_last": round(span, 2),
        "mails_per_s": rate,
        "mails_per_s_per_process": round(rate / shape.workers, 1) if rate else None,
        "mails_per_s_from_start": round(delivered / (last - began), 1) if last else None,
        "duplicates": duplicates,
        **used,
    }
    run.record("drain", record)
    label = f"drain {scenario.name} {shape} ({sink_kind}, {delay:g} s SMTP)"
    if not record["complete"]:
        run.fail(f"{label}: {delivered} of {count} mails within {timeout} s")
    if duplicates:
        run.fail(f"{label}: {duplicates} duplicate mails")
    print(
        f"  {label}: {delivered}/{count} mails, {rate} mails/s (first to last), "
        f"{record['mails_per_s_from_start']} mails/s from start",
        flush=True,
    )


async def _arrivals(
    sink: Sink | PostfixSink, count: int, timeout: float
) -> tuple[float | None, float | None, int]:
    """(first arrival, last arrival, mails delivered) once all arrived or time ran out."""
    if isinstance(sink, Sink):
        await sink.wait_for_count(count, timeout)
        times = sorted(sink.first.values())
        return (times[0], times[-1], len(times)) if times else (None, None, 0)
    # smtp-sink prints a counter, not times: poll it.
    deadline = time.monotonic() + timeout
    first: float | None = None
    last: float | None = None
    seen = 0
    while seen < count and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        now, current = time.time(), sink.count()
        if current > seen:
            first = first or now
            last, seen = now, current
    return first, last, seen
