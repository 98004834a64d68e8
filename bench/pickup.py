"""Pickup latency from another process on PostgreSQL: ``python -m bench.pickup``.

A runner (``manage.py run_jobs``) waits, idle, on a fresh PostgreSQL database
while a second process signs up ``--jobs`` addresses one at a time, each in
its own transaction (``register_address``, as sync code, a cron job or another
host would), ``--gap`` seconds apart. Per job:

- pickup: the enqueuer's clock when its COMMIT returned (and, an upper
  bound, as it sent it) -> the ledger's
  ``started_at``, written by the runner's claim (same host, same clock);
- inbox: the same commit -> the SMTP sink's 250.

Two modes: the wake-up (LISTEN/NOTIFY) with a 30 s poll, so every pickup
before 30 s is the wake-up's; and ``TASKS_WAKEUP=0`` at the default 2 s poll,
what a job queued elsewhere waited before.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from django.db import transaction

from .procs import PYTHON, ROOT, Child, Sink

RESULTS = Path(__file__).resolve().parent / "results"
MODES = {
    "wake-up, 30 s poll": {"TASKS_WAKEUP": "1", "TASKS_POLL_INTERVAL": "30"},
    "poll only, 2 s": {"TASKS_WAKEUP": "0", "TASKS_POLL_INTERVAL": "2"},
}


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    name = f"bench_pickup_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield admin_url.rsplit("/", 1)[0] + f"/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def percentile(values: list[float], p: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))]


def spread_ms(seconds: list[float]) -> dict[str, float]:
    ms = [value * 1000 for value in seconds]
    return {
        "p50": percentile(ms, 50),
        "p99": percentile(ms, 99),
        "max": max(ms),
        "min": min(ms),
    }


def wait_listening(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as admin:
        while not admin.execute(
            "SELECT 1 FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = 'job wake-up'"
        ).fetchone():
            if time.monotonic() > deadline:
                raise RuntimeError("the runner is not listening")
            time.sleep(0.05)


def claims(url: str, count: int, timeout: float) -> dict[str, float]:
    """Each address's claim time (unix seconds), once all ``count`` jobs are claimed."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as reader:
        while True:
            rows = reader.execute(
                "SELECT args->>0, extract(epoch FROM started_at)::float8"
                " FROM background_job WHERE started_at IS NOT NULL"
            ).fetchall()
            if len(rows) >= count:
                return dict(rows)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(rows)} of {count} jobs claimed")
            time.sleep(0.2)


def measure(admin_url: str, mode: str, jobs: int, gap: float, directory: Path) -> dict[str, Any]:
    sink = Sink(directory / "raw", delay=0.0)
    try:
        with fresh_database(admin_url) as url:
            env = {
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "asgi_project.settings",
                "DEBUG": "0",
                "SECRET_KEY": "bench-only-not-secret",
                "SITE_URL": "http://127.0.0.1",
                "DATABASE_URL": url,
                "EMAIL_HOST": "127.0.0.1",
                "EMAIL_PORT": str(sink.port),
                "SIGNUP_RATE_PER_IP": "off",
                "MAIL_RATE_PER_ADDRESS": "off",
                "LOG_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1",
                **MODES[mode],
            }
            subprocess.run(
                [PYTHON, "manage.py", "migrate", "--no-input", "-v", "0"],
                cwd=ROOT, env=env, check=True, timeout=300,
            )  # fmt: skip
            tag = mode.split(",")[0].replace(" ", "-")
            runner = Child(
                "run_jobs",
                [PYTHON, "manage.py", "run_jobs"],
                env,
                directory / "raw" / f"{tag}-runner.log",
            )
            try:
                runner.wait_for_log("Running jobs as", timeout=60)
                if env["TASKS_WAKEUP"] == "1":
                    wait_listening(url)
                commits_path = directory / "raw" / f"{tag}-commits.json"
                subprocess.run(
                    [PYTHON, "-m", "bench.pickup", "enqueue", "--jobs", str(jobs),
                     "--gap", str(gap), "--out", str(commits_path)],
                    cwd=ROOT, env=env, check=True, timeout=600,
                )  # fmt: skip
                commits: dict[str, list[float]] = json.loads(commits_path.read_text())
                claimed = claims(url, jobs, timeout=120)
                deadline = time.monotonic() + 60
                while sink.poll() < jobs and time.monotonic() < deadline:
                    time.sleep(0.1)
            finally:
                runner.stop()
    finally:
        sink.stop()
    (directory / "raw" / f"{tag}-jobs.json").write_text(
        json.dumps({"commits": commits, "claims": claimed, "inbox": sink.first})
    )
    sent = {email: times[0] for email, times in commits.items()}
    done = {email: times[1] for email, times in commits.items()}
    return {
        "mode": mode,
        "jobs": jobs,
        "gap_s": gap,
        "pickup_ms": spread_ms([claimed[email] - at for email, at in done.items()]),
        "pickup_from_commit_sent_ms": spread_ms([claimed[e] - at for e, at in sent.items()]),
        "inbox_ms": spread_ms([sink.first[email] - at for email, at in done.items()]),
        "mails": len(sink.first),
        "load_average_1m_after": os.getloadavg()[0],
    }


def enqueue(jobs: int, gap: float, out: Path) -> None:
    """In its own process: sign up ``jobs`` addresses, one transaction each."""
    import django

    django.setup()
    from signup.services import register_address

    commits: dict[str, tuple[float, float]] = {}
    for i in range(jobs):
        email = f"pickup{i}@example.com"
        with transaction.atomic():
            register_address(email, "192.0.2.1")
            sent = time.time()
        # The job is visible somewhere between the two: from the first the
        # figure includes the COMMIT's round trip (and fsync), from the second
        # it may miss a moment this process was not scheduled.
        commits[email] = (sent, time.time())
        time.sleep(gap)
    out.write_text(json.dumps(commits))


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| mode | jobs | pickup p50 ms | p99 ms | max ms | p99 from COMMIT sent, ms"
        " | inbox p50 ms | inbox p99 ms | load average |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for result in results:
        pickup, inbox = result["pickup_ms"], result["inbox_ms"]
        upper = result["pickup_from_commit_sent_ms"]
        rows.append(
            f"| {result['mode']} | {result['jobs']} | {pickup['p50']:.1f} | {pickup['p99']:.1f}"
            f" | {pickup['max']:.1f} | {upper['p99']:.1f} | {inbox['p50']:.1f}"
            f" | {inbox['p99']:.1f} | {result['load_average_1m_after']:.1f} |"
        )
    return "\n".join(rows)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pickup", description=__doc__)
    parser.add_argument("command", nargs="?", choices=["run", "enqueue"], default="run")
    parser.add_argument("--jobs", type=int, default=200)
    # Longer than a mail takes, so each job finds the runner idle.
    parser.add_argument("--gap", type=float, default=0.2, help="seconds between signups")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test"),
        help="a server where this user may create databases",
    )
    parser.add_argument("--out", type=Path, help="enqueue: where to write commit times")
    args = parser.parse_args(argv)
    if args.command == "enqueue":
        enqueue(args.jobs, args.gap, args.out)
        return
    directory = RESULTS / f"{datetime.now(UTC):%Y%m%dT%H%MZ}-pickup"
    (directory / "raw").mkdir(parents=True)
    results = [measure(args.postgres, mode, args.jobs, args.gap, directory) for mode in MODES]
    (directory / "pickup.json").write_text(json.dumps(results, indent=2) + "\n")
    (directory / "pickup.md").write_text(table(results) + "\n")
    print(table(results))
    print(f"\n{directory}")


if __name__ == "__main__":
    main(sys.argv[1:])
