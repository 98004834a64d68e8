"""Memory: the product's server RSS with a small and a large backlog in its ledger.

Each of ``--memory`` (1,000 and 100,000) mails is queued with nothing
running, then the server runs for ``--memory-watch`` (20 s) against a 0 s
sink while its RSS is sampled; the goal compares the peaks. A runner that
loaded its whole backlog would grow with it.
"""

import asyncio
from functools import partial
from typing import TYPE_CHECKING, Any

from ..procs import Sink
from ..scenarios import Scenario, Shape
from ..session import Session

if TYPE_CHECKING:
    from ..run import Run


def applies(scenario: Scenario, shape: Shape) -> bool:
    return scenario.name == "project"


async def run(run: "Run", shape: Shape, scenarios: list[Scenario]) -> None:
    for scenario in scenarios:
        if run.config.memory_backlogs:
            await run.guarded(scenario, shape, partial(_watch, run, scenario, shape))


async def _watch(run: "Run", scenario: Scenario, shape: Shape) -> None:
    config = run.config
    record: dict[str, Any] = {
        "scenario": scenario.name,
        "shape": str(shape),
        "watch_s": config.memory_watch,
        "backlogs": {},
    }
    for count in config.memory_backlogs:
        async with Session(run, scenario, shape, backlog=count) as session:
            usage = session.usage()
            await asyncio.sleep(config.memory_watch)
            used = await usage.stop()
            assert isinstance(session.sink, Sink)
            sent = session.sink.poll()
        record["backlogs"][str(count)] = {
            "enqueue_seconds": round(session.enqueue_seconds, 2),
            "sent_while_watched": sent,
            **used,
        }
        print(
            f"  memory {scenario.name} {shape} {count} queued: server RSS peak "
            f"{used['server']['rss_peak_mb']} MB, {sent} sent in {config.memory_watch:g} s",
            flush=True,
        )
    run.record("memory", record)
