"""``python -m bench run [--smoke] [--shapes ...] [--scenarios ...] [--phases ...]``: the benchmark.

Full runs write bench/results/<UTC timestamp>/; smoke runs write to a temporary
directory and exit non-zero if any request got a 5xx (or no answer), a mail
was lost or sent twice, or a scenario could not run.
"""

import argparse
import asyncio
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .config import Config
from .phases import PHASES
from .report import machine, write
from .run import Run
from .scenarios import SCENARIOS, Shape
from .search import SearchPlan

RESULTS = Path(__file__).resolve().parent / "results"
SHAPES = ["sqlite-w1", "postgres-w1", "postgres-w2"]
SMOKE_SHAPES = ["sqlite-w1", "postgres-w2"]
# Where a full run measures the peers: the shapes the goals compare them on
# (bench/goals.py). Every peer on every shape would add ~25 minutes for no goal.
PEER_SHAPES = ["sqlite-w1", "postgres-w2"]
POSTGRES = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def peer_shape(text: str) -> str:
    """A shape's name, checked as --shapes checks it, or 'all'."""
    if text == "all":
        return text
    try:
        return str(Shape.parse(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the benchmark; defaults are the full run's")
    add = run.add_argument
    add("--smoke", action="store_true", help="seconds per phase, tiny rates (what CI runs)")
    add(
        "--shapes",
        nargs="+",
        type=Shape.parse,
        help=f"<sqlite|postgres>-w<N> ({' '.join(SHAPES)}; smoke: {' '.join(SMOKE_SHAPES)})",
    )
    add("--scenarios", nargs="+", choices=list(SCENARIOS), help="default: all")
    add(
        "--peer-shapes",
        nargs="+",
        type=peer_shape,
        help=f"shapes the peers run on, or 'all' ({' '.join(PEER_SHAPES)}; smoke: all)",
    )
    add("--phases", nargs="+", choices=list(PHASES), help="default: all")
    add("--postgres", default=POSTGRES, help="server where bench_<pid>_* databases are made")
    add("--step-seconds", type=float, help="sustained: s per step (60; smoke 2)")
    add("--search-start", type=float, help="sustained: first rate, req/s (25; smoke 10)")
    add("--search-factor", type=float, help="sustained: step factor (1.5; smoke 2)")
    add("--search-precision", type=float, help="sustained: refine to within (0.1; smoke 1)")
    add("--search-highest", type=float, help="sustained: highest rate tried (3000; smoke 40)")
    add("--search-lowest", type=float, help="sustained: lowest rate tried (2; smoke 5)")
    add("--search-steps", type=int, help="sustained: most steps per scenario (14; smoke 3)")
    add(
        "--slow-step-retries",
        type=int,
        help="sustained: tries again of a step failed on time (1; smoke 0)",
    )
    add("--fractions", nargs="+", type=float, help="latency: rates (.25 .5 .8; smoke .5)")
    add("--delays", nargs="+", type=float, help="latency: SMTP delays, s (0 2; smoke 0)")
    add("--seconds", type=float, help="latency: s per rate (15; smoke 1.5)")
    add("--base-rate", type=float, help="latency: 100 %% (project's sustained rate; smoke 20)")
    add("--closed-seconds", type=float, help="maximum: s per probe (10; smoke 2)")
    add("--connections", type=int, default=32, help="maximum: closed-loop connections")
    add("--no-wrk", action="store_true", help="maximum: no wrk probe")
    add("--drain", type=int, help="drain: backlog (10000; smoke 100)")
    add("--drain-timeout", type=float, help="drain: s to wait (900; smoke 30)")
    add(
        "--drain-sinks",
        nargs="+",
        choices=["bench", "smtp-sink"],
        help="drain: sinks (bench, and smtp-sink when installed; smoke: bench)",
    )
    add("--relay-delay", type=float, default=2.0, help="drain: the slow relay's s per mail")
    add("--relay-mails", type=int, help="drain: mails into the slow relay (600; smoke 20)")
    add("--recovery-backlog", type=int, help="recovery: mails queued (10000; smoke 100)")
    add("--memory", nargs="*", type=int, help="memory: backlogs (1000 100000; smoke 50 200)")
    add("--memory-watch", type=float, help="memory: s per backlog (20; smoke 2)")
    add("--pickup-jobs", type=int, help="pickup: signups from another process (200; smoke 10)")
    add("--pickup-gap", type=float, help="pickup: s between them (0.2; smoke 0.05)")
    add("--mail-wait", type=float, help="s to wait for a load's mails (60; smoke 20)")
    add("--request-timeout", type=float, help="client timeout, s (30; smoke 10)")
    add("--warmup", type=int, help="requests per session before measuring (50; smoke 5)")
    add("--celery-pool", default="threads", help="celery worker --pool")
    add("--celery-concurrency", type=int, default=16, help="celery worker --concurrency")
    add("--redis-url", default="redis://127.0.0.1:6379/11", help="Celery's broker; flushed")
    add("--out", type=Path, help="output directory")
    report = commands.add_parser("report", help="rewrite results.md and the plots")
    report.add_argument("results", type=Path, help="a run's directory (with results.json)")
    return parser.parse_args(argv)


def config_from(args: argparse.Namespace, started: datetime) -> Config:
    smoke = args.smoke

    def pick[T](value: T | None, full: T, quick: T) -> T:
        return value if value is not None else (quick if smoke else full)

    if args.out is not None:
        out = args.out
    elif smoke:
        out = Path(tempfile.mkdtemp(prefix="bench-smoke-"))
    else:
        out = RESULTS / started.strftime("%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True, exist_ok=True)
    peer_shapes = pick(args.peer_shapes, PEER_SHAPES, ["all"])
    sinks = ["bench"] if smoke or not shutil.which("smtp-sink") else ["bench", "smtp-sink"]
    return Config(
        smoke=smoke,
        out=out,
        shapes=args.shapes or list(map(Shape.parse, SMOKE_SHAPES if smoke else SHAPES)),
        scenarios=args.scenarios or list(SCENARIOS),
        peer_shapes=None if peer_shapes == ["all"] else peer_shapes,
        phases=args.phases or list(PHASES),
        postgres_url=args.postgres,
        mail_wait=pick(args.mail_wait, 60.0, 20.0),
        request_timeout=pick(args.request_timeout, 30.0, 10.0),
        warmup=pick(args.warmup, 50, 5),
        step_seconds=pick(args.step_seconds, 60.0, 2.0),
        search=SearchPlan(
            start=pick(args.search_start, 25.0, 10.0),
            factor=pick(args.search_factor, 1.5, 2.0),
            lowest=pick(args.search_lowest, 2.0, 5.0),
            highest=pick(args.search_highest, 3000.0, 40.0),
            precision=pick(args.search_precision, 0.1, 1.0),
            max_steps=pick(args.search_steps, 14, 3),
        ),
        slow_step_retries=pick(args.slow_step_retries, 1, 0),
        fractions=pick(args.fractions, [0.25, 0.5, 0.8], [0.5]),
        delays=pick(args.delays, [0.0, 2.0], [0.0]),
        seconds=pick(args.seconds, 15.0, 1.5),
        # The smoke's rates do not hang on its 2 s search passing on a busy machine.
        base_rate=pick(args.base_rate, None, 20.0),
        closed_seconds=pick(args.closed_seconds, 10.0, 2.0),
        connections=args.connections,
        wrk=not args.no_wrk and shutil.which("wrk") is not None,
        drain_count=pick(args.drain, 10_000, 100),
        drain_timeout=pick(args.drain_timeout, 900.0, 30.0),
        drain_sinks=args.drain_sinks or sinks,
        relay_delay=args.relay_delay,
        relay_count=pick(args.relay_mails, 600, 20),
        recovery_backlog=pick(args.recovery_backlog, 10_000, 100),
        memory_backlogs=pick(args.memory, [1000, 100_000], [50, 200]),
        memory_watch=pick(args.memory_watch, 20.0, 2.0),
        pickup_jobs=pick(args.pickup_jobs, 200, 10),
        pickup_gap=pick(args.pickup_gap, 0.2, 0.05),
        celery_pool=args.celery_pool,
        celery_concurrency=args.celery_concurrency,
        redis_url=args.redis_url,
    )


async def run(config: Config) -> dict[str, Any]:
    # SIGTERM (a CI timeout, kill) and SIGINT (also where a shell started the
    # run in the background, ignoring it) cancel the run, so every session
    # stops its processes and the run drops its databases on the way out.
    main = asyncio.current_task()
    assert main is not None
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, main.cancel)
    async with Run(config) as bench:
        return await bench.execute()


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.command == "report":
        results = json.loads((args.results / "results.json").read_text())
        write(results, args.results)
        print((args.results / "results.md").read_text())
        return 0
    started = datetime.now(UTC).replace(microsecond=0)
    config = config_from(args, started)
    print(f"bench: writing to {config.out}", flush=True)
    began = time.monotonic()
    try:
        results = asyncio.run(run(config))
    except asyncio.CancelledError:
        print("bench: stopped; processes stopped and databases dropped", file=sys.stderr)
        return 128 + signal.SIGTERM
    results["meta"] = {
        "started_at": started.isoformat(),
        "seconds": round(time.monotonic() - began, 1),
        "smoke": config.smoke,
        "command": shlex.join(["python", "-m", "bench", *argv]),
        "machine": machine(),
        "config": json.loads(json.dumps(asdict(config), default=str)),
    }
    write(results, config.out)
    print((config.out / "results.md").read_text())
    print(f"bench: {results['meta']['seconds']} s, results in {config.out}", flush=True)
    failures = results["failures"]
    if failures:
        print(f"bench: {len(failures)} failure(s)", file=sys.stderr)
    # A full run records what failed (a peer that cannot run is a finding); a
    # smoke run is a check.
    return 1 if config.smoke and failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
