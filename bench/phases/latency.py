"""Latency at fixed rates: every scenario at the same open-loop rates, SMTP at 0 s and slow.

The rates are ``--fractions`` (25, 50, 80 %) of the project's sustained rate
on the shape (``--base-rate`` instead, if given), so the goals' "at half the
project's sustained rate" compares every scenario under the same load. Per
rate: signup latency percentiles from the due time, errors, the server's CPU,
and for a scenario that sends mail, time-to-inbox and mails not delivered
within the wait. The rates run one after the other in one session while it
owes no mail.
"""

from functools import partial
from typing import TYPE_CHECKING, Any

from ..measure import open_step
from ..scenarios import Scenario, Shape
from ..session import SessionSlot
from .sustained import sustained_rate

if TYPE_CHECKING:
    from ..run import Run

BASE = "project"  # whose sustained rate is the 100 %


def applies(scenario: Scenario, shape: Shape) -> bool:
    return True


def base_rate(run: "Run", phase: str, shape: Shape) -> float | None:
    """The 100 % of the phase's rates on ``shape``; a failure of the run if there is none."""
    base = run.config.base_rate or sustained_rate(run, BASE, shape)
    if not base:
        run.fail(
            f"{phase} {shape}: no base rate ({BASE}'s sustained rate was not measured "
            "or none passed; give --base-rate)"
        )
    return base


async def run(run: "Run", shape: Shape, scenarios: list[Scenario]) -> None:
    config = run.config
    base = base_rate(run, "latency", shape) if scenarios else None
    if not base:
        return
    for scenario in scenarios:
        for delay in config.delays:
            await run.guarded(scenario, shape, partial(_rates, run, scenario, shape, delay, base))


async def _rates(run: "Run", scenario: Scenario, shape: Shape, delay: float, base: float) -> None:
    config = run.config
    async with SessionSlot(run, scenario, shape, delay) as slot:
        for fraction in config.fractions:
            rate = round(fraction * base, 1)
            session = await slot.get()
            step = await open_step(run, session, rate, config.seconds, f"{fraction * 100:g}pct")
            record: dict[str, Any] = {"fraction": fraction, "base_rate": base, **step}
            run.check_answers(
                f"latency {scenario.name} {shape} delay={delay:g}s at {rate:g}/s", record
            )
            run.record("latency", record)
            _print(record)


def _print(record: dict[str, Any]) -> None:
    latency, mail = record["latency_ms"], record.get("mail") or {}
    inbox = (mail.get("time_to_inbox_ms") or {}).get("p99")
    print(
        f"  {record['scenario']} {record['shape']} delay={record['smtp_delay']:g}s "
        f"{record['fraction'] * 100:g}% = {record['target_rate']:g}/s: "
        f"p50 {latency['p50']:.1f} p99 {latency['p99']:.1f} max {latency['max']:.1f} ms, "
        f"{record['statuses']}"
        + (f", inbox p99 {inbox} ms, not delivered {mail['undelivered']}" if mail else ""),
        flush=True,
    )
