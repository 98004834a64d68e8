"""Pickup from another process, PostgreSQL: how long a job queued elsewhere waits.

A runner (``manage.py run_jobs``) waits, idle, on a fresh database while a
second process signs up ``--pickup-jobs`` addresses one at a time, each in
its own transaction (``bench.backlog.paced``, as sync code, a cron job or
another host would), ``--pickup-gap`` seconds apart (longer than a mail
takes, so each job finds the runner idle). Per job:

- pickup: the enqueuer's clock when its COMMIT returned (and, an upper bound,
  when it was sent) -> the ledger's ``started_at``, written by the runner's
  claim (same host, same clock);
- inbox: the same commit -> the SMTP sink's 250.

Two modes: the wake-up (``LISTEN``/``NOTIFY``) with a 30 s poll, so every
pickup before 30 s is the wake-up's; and ``TASKS_WAKEUP=0`` at the default
2 s poll, what a job queued elsewhere waits without it. Once per run, on the
first PostgreSQL shape (one runner process: the shape's workers do not
matter).
"""

import asyncio
import json
import os
import time
from functools import partial
from typing import TYPE_CHECKING, Any

import psycopg

from ..measure import spread_ms
from ..procs import PYTHON, Sink
from ..scenarios import Scenario, Shape
from ..session import Session

if TYPE_CHECKING:
    from ..run import Run

MODES = {
    "wake-up": {"TASKS_WAKEUP": "1", "TASKS_POLL_INTERVAL": "30"},
    "poll": {"TASKS_WAKEUP": "0", "TASKS_POLL_INTERVAL": "2"},
}


def applies(scenario: Scenario, shape: Shape) -> bool:
    return scenario.name == "project" and shape.database == "postgres"


async def run(run: "Run", shape: Shape, scenarios: list[Scenario]) -> None:
    first_postgres = next(s for s in run.config.shapes if s.database == "postgres")
    if shape != first_postgres:
        return
    for scenario in scenarios:
        for mode in MODES:
            await run.guarded(scenario, shape, partial(_measure, run, scenario, shape, mode))


async def _measure(run: "Run", scenario: Scenario, shape: Shape, mode: str) -> None:
    config = run.config
    async with Session(run, scenario, shape, serve=False, env=MODES[mode]) as session:
        assert session.database is not None and isinstance(session.sink, Sink)
        url = session.database.url
        session.spawn("run_jobs", [PYTHON, "manage.py", "run_jobs"], "Running jobs as", 60)
        if MODES[mode]["TASKS_WAKEUP"] == "1":
            await _listening(url)
        commits_path = run.raw / f"{session.tag}-commits.json"
        prefix = f"{session.tag}-pickup"
        code = (
            "from bench.backlog import paced; "
            f"paced({prefix!r}, {config.pickup_jobs}, {config.pickup_gap}, {str(commits_path)!r})"
        )
        await asyncio.to_thread(session.manage, "shell", "-v", "0", "-c", code)
        commits: dict[str, list[float]] = json.loads(commits_path.read_text())
        claimed = await _claims(url, config.pickup_jobs, timeout=120)
        await session.sink.wait_for(set(commits), config.mail_wait)
        inbox = dict(session.sink.first)
    done = {email: times[1] for email, times in commits.items()}
    sent = {email: times[0] for email, times in commits.items()}
    record: dict[str, Any] = {
        "scenario": scenario.name,
        "shape": str(shape),
        "mode": mode,
        "settings": MODES[mode],
        "jobs": config.pickup_jobs,
        "gap_s": config.pickup_gap,
        "pickup_ms": spread_ms([claimed[e] - at for e, at in done.items()]),
        "pickup_from_commit_sent_ms": spread_ms([claimed[e] - at for e, at in sent.items()]),
        "inbox_ms": spread_ms([inbox[e] - at for e, at in done.items() if e in inbox]),
        "mails": sum(1 for e in commits if e in inbox),
        "load_average_1m_after": round(os.getloadavg()[0], 2),
    }
    run.record("pickup", record)
    if record["mails"] < len(commits):
        run.fail(f"pickup {mode}: {record['mails']} of {len(commits)} mails delivered")
    pickup = record["pickup_ms"] or {}
    print(
        f"  pickup {mode} {shape}: p50 {pickup.get('p50')} p99 {pickup.get('p99')} "
        f"max {pickup.get('max')} ms, {record['mails']}/{len(commits)} mails",
        flush=True,
    )


async def _listening(url: str, timeout: float = 20.0) -> None:
    """Wait until the runner's wake-up connection LISTENs."""
    deadline = time.monotonic() + timeout
    query = (
        "SELECT 1 FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name = 'job wake-up'"
    )
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        while not await (await admin.execute(query)).fetchone():
            if time.monotonic() > deadline:
                raise RuntimeError("the runner is not listening")
            await asyncio.sleep(0.05)


async def _claims(url: str, count: int, timeout: float) -> dict[str, float]:
    """Each address's claim time (unix seconds), once all ``count`` jobs are claimed."""
    deadline = time.monotonic() + timeout
    query = (
        "SELECT args->>0, extract(epoch FROM started_at)::float8"
        " FROM background_job WHERE started_at IS NOT NULL"
    )
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as reader:
        while True:
            rows = await (await reader.execute(query)).fetchall()
            if len(rows) >= count:
                return dict(rows)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(rows)} of {count} jobs claimed")
            await asyncio.sleep(0.2)
