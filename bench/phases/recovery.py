"""Signups while a backlog drains: the mail must not starve the requests that share its loop.

After an SMTP outage or a stop, the product's runner finds a backlog and sends
it as fast as the relay takes it, on the event loop that also serves the
requests. ``--recovery-backlog`` (10,000) mails are queued with nothing
running, uvicorn starts, and once it answers, the open loop signs up at half
the project's sustained rate on the shape (``--base-rate`` instead, if given)
for ``--seconds``, 0 s SMTP. The record is a latency step (the signups'
latency and time-to-inbox), plus how much of the backlog arrived during the
load; the report sets it beside the latency phase's row at the same rate with
nothing queued.
"""

import time
from functools import partial
from typing import TYPE_CHECKING, Any

from ..measure import open_step
from ..procs import Sink
from ..scenarios import Scenario, Shape
from ..session import Session
from .latency import base_rate

if TYPE_CHECKING:
    from ..run import Run

FRACTION = 0.5  # of the project's sustained rate, as the latency goals


def applies(scenario: Scenario, shape: Shape) -> bool:
    return scenario.name == "project"


async def run(run: "Run", shape: Shape, scenarios: list[Scenario]) -> None:
    config = run.config
    if not scenarios or config.recovery_backlog <= 0:
        return
    base = base_rate(run, "recovery", shape)
    if not base:
        return
    for scenario in scenarios:
        await run.guarded(scenario, shape, partial(_load, run, scenario, shape, base))


async def _load(run: "Run", scenario: Scenario, shape: Shape, base: float) -> None:
    config = run.config
    rate = round(FRACTION * base, 1)
    async with Session(run, scenario, shape, backlog=config.recovery_backlog) as session:
        session.server.wait_ready()
        began = time.time()
        step = await open_step(run, session, rate, config.seconds, "recovery")
        sink = session.sink
        assert isinstance(sink, Sink)
        sink.poll()
    backlog = [t for r, t in sink.first.items() if r.startswith(f"{session.backlog_prefix}-")]
    load_ended = began + config.seconds
    record: dict[str, Any] = {
        "fraction": FRACTION,
        "base_rate": base,
        "queued": config.recovery_backlog,
        # Backlog mails that arrived while the signups were being sent, and
        # those still queued when the load ended (0: it drained before the end).
        "backlog_sent_during_load": sum(1 for t in backlog if began <= t <= load_ended),
        "backlog_left_at_load_end": config.recovery_backlog
        - sum(1 for t in backlog if t <= load_ended),
        **step,
    }
    run.check_answers(f"recovery {scenario.name} {shape} at {rate:g}/s", record)
    run.record("recovery", record)
    latency, mail = record["latency_ms"], record["mail"]
    print(
        f"  recovery {scenario.name} {shape}, {config.recovery_backlog} queued, {rate:g}/s: "
        f"p50 {latency['p50']:.1f} p99 {latency['p99']:.1f} ms, {record['statuses']}, "
        f"inbox p99 {(mail['time_to_inbox_ms'] or {}).get('p99')} ms, backlog sent during "
        f"the load {record['backlog_sent_during_load']}, left {record['backlog_left_at_load_end']}",
        flush=True,
    )
