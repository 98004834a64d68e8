"""Sustained rate, the headline figure: the highest open-loop rate a scenario keeps up with.

Each step posts at one rate for ``--step-seconds`` (60 s) at 0 s SMTP and
passes when it meets every one of ``CRITERIA`` (mail criteria only for a
scenario that sends mail; the floor sends none). The rates are searched by
``bench/search.py``: up by a factor from a low start until a step fails, then
bisected between the last pass and the first fail. A closed-loop maximum
counts signups whose mails are still owed; this rate is one the service
keeps delivering.

A step ends early once more of its planned requests took longer than the
latency limit than its p99 allows (about 1 %: ``criteria.slow_allowed``) or
one got a 5xx or no answer; its mails are still waited for, so a lost mail shows either way. A
failed step leaves its session behind: the next step starts fresh processes.
A step that failed on time alone (``Criteria.only_slow``) is tried again
``--slow-step-retries`` times (1) before the rate counts as failed.
"""

from dataclasses import asdict
from functools import partial
from typing import TYPE_CHECKING, Any

from ..criteria import CRITERIA, Decided
from ..measure import open_step
from ..scenarios import Scenario, Shape
from ..search import search
from ..session import SessionSlot

if TYPE_CHECKING:
    from ..run import Run


def applies(scenario: Scenario, shape: Shape) -> bool:
    return scenario.searched


async def run(run: "Run", shape: Shape, scenarios: list[Scenario]) -> None:
    for scenario in scenarios:
        await run.guarded(scenario, shape, partial(_search, run, scenario, shape))


def sustained_rate(run: "Run", scenario: str, shape: Shape) -> float | None:
    """A sustained rate this run measured (None: not measured, or no rate passed)."""
    for record in run.results["sustained"]:
        if record["scenario"] == scenario and record["shape"] == str(shape):
            rate: float | None = record["rate"]
            return rate
    return None


async def _search(run: "Run", scenario: Scenario, shape: Shape) -> None:
    config = run.config
    steps: list[dict[str, Any]] = []

    async def attempt(rate: float) -> bool:
        # A step that failed on time alone is tried again on fresh processes:
        # one bad minute of a shared VM must not set the rate (the 2026-11-26
        # run failed postgres-w2 at 31.2 req/s, then passed it twice in a row).
        for _ in range(1 + config.slow_step_retries):
            step = await attempt_once(rate)
            if not step["misses"] or not CRITERIA.only_slow(step):
                break
        return not step["misses"]

    async def attempt_once(rate: float) -> dict[str, Any]:
        session = await slot.get()
        planned = max(1, int(rate * config.step_seconds))
        step = await open_step(
            run,
            session,
            rate,
            config.step_seconds,
            f"r{rate:g}",
            stop=Decided(planned, CRITERIA),
        )
        step["misses"] = CRITERIA.misses(step)
        run.check_answers(f"sustained {scenario.name} {shape} at {rate:g}/s", step)
        step["try"] = sum(1 for done in steps if done["target_rate"] == rate) + 1
        steps.append(step)
        session.dirty = session.dirty or bool(step["misses"])
        _print(step)
        return step

    async with SessionSlot(run, scenario, shape, 0.0) as slot:
        bracket = await search(config.search, attempt)
    record: dict[str, Any] = {
        "scenario": scenario.name,
        "shape": str(shape),
        "smtp_delay": 0.0,
        "rate": bracket.passed,
        "failed_rate": bracket.failed,
        "criteria": asdict(CRITERIA) | {"mail": scenario.sends_mail},
        "step_seconds": config.step_seconds,
        "search": asdict(config.search),
        "slow_step_retries": config.slow_step_retries,
        "passing": _last_at(steps, bracket.passed),
        "failing": _last_at(steps, bracket.failed),
        "steps": steps,
    }
    run.record("sustained", record)
    why = "; ".join(record["failing"]["misses"]) if record["failing"] else "no step failed"
    print(
        f"  sustained {scenario.name} {shape}: {bracket.passed} req/s "
        f"(next, {bracket.failed} req/s: {why})",
        flush=True,
    )


def _last_at(steps: list[dict[str, Any]], rate: float | None) -> dict[str, Any] | None:
    """The step that decided ``rate``: its last try."""
    tries = [step for step in steps if step["target_rate"] == rate]
    return tries[-1] if tries else None


def _print(step: dict[str, Any]) -> None:
    latency, mail = step["latency_ms"], step.get("mail") or {}
    inbox = (mail.get("time_to_inbox_ms") or {}).get("p99")
    print(
        f"  {step['scenario']} {step['shape']} {step['target_rate']:g}/s"
        f"{' (stopped early)' if step['stopped_early'] else ''}: "
        f"p50 {latency['p50']:.1f} p99 {latency['p99']:.1f} ms"
        + (f", inbox p99 {inbox} ms, owed at end {mail['backlog_at_end']}" if mail else "")
        + (f" -> FAILS: {'; '.join(step['misses'])}" if step["misses"] else " -> passes"),
        flush=True,
    )
