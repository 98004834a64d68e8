"""``python -m bench run [--smoke] [--scenarios ...]``: the whole benchmark, one command.

Full runs write bench/results/<UTC timestamp>/; smoke runs write to a temporary
directory and exit non-zero if any request got a 5xx (or no answer) or any mail
was lost.
"""

import argparse
import asyncio
import json
import shlex
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from .harness import IN_REPO, PEERS, SCENARIOS, Config, Harness
from .report import machine, write

RESULTS = Path(__file__).resolve().parent / "results"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the benchmark")
    run.add_argument("--smoke", action="store_true", help="seconds, tiny rates, in-repo only")
    run.add_argument(
        "--scenarios",
        nargs="+",
        choices=list(SCENARIOS),
        help=f"default: all ({', '.join(SCENARIOS)}); smoke: {', '.join(IN_REPO)}",
    )
    run.add_argument("--delays", nargs="+", type=float, default=[0.0, 2.0], help="SMTP delays, s")
    run.add_argument("--workers", nargs="+", type=int, default=[1], help="uvicorn --workers")
    run.add_argument(
        "--fractions", nargs="+", type=float, default=[0.25, 0.5, 0.8], help="of floor-insert max"
    )
    run.add_argument("--seconds", type=float, help="per open-loop rate (15; smoke 1.5)")
    run.add_argument("--closed-seconds", type=float, help="closed-loop probe (10; smoke 2)")
    run.add_argument("--connections", type=int, default=32, help="closed-loop connections")
    run.add_argument("--drain", type=int, help="backlog for the drain rate (10000; smoke 100)")
    run.add_argument("--drain-timeout", type=float, help="s to wait for a drain (900; smoke 30)")
    run.add_argument(
        "--drain-sinks",
        nargs="+",
        choices=["bench", "smtp-sink"],
        help="sinks to drain into (bench and smtp-sink when installed; smoke: bench)",
    )
    run.add_argument(
        "--memory",
        nargs="*",
        type=int,
        help="backlogs for the RSS check (1000 100000; smoke 100 1000)",
    )
    run.add_argument("--memory-watch", type=float, help="s per backlog for the RSS check (20; 3)")
    run.add_argument("--mail-wait", type=float, help="s to wait for a rate's mails (60; smoke 20)")
    run.add_argument("--request-timeout", type=float, help="client timeout, s (30; smoke 10)")
    run.add_argument("--warmup", type=int, help="requests per session before measuring (50; 5)")
    run.add_argument("--rate-cap", type=float, help="cap on the rates' base (none; smoke 10/s)")
    run.add_argument("--base-rate", type=float, help="100 %% for the rates (default: measured)")
    run.add_argument(
        "--no-closed", action="store_true", help="probe the maximum of the baseline only"
    )
    run.add_argument(
        "--no-load", action="store_true", help="only the drain and memory phases, no load"
    )
    run.add_argument("--no-wrk", action="store_true", help="no wrk closed-loop probe")
    run.add_argument("--celery-pool", default="threads", help="celery worker --pool")
    run.add_argument("--celery-concurrency", type=int, default=16, help="celery --concurrency")
    run.add_argument("--redis-url", default="redis://127.0.0.1:6379/11", help="flushed per run")
    run.add_argument("--out", type=Path, help="output directory")
    report = commands.add_parser("report", help="rewrite results.md and the plots")
    report.add_argument("results", type=Path, help="a run's directory (with results.json)")
    return parser.parse_args(argv)


def config_from(args: argparse.Namespace, started: datetime) -> Config:
    smoke = args.smoke

    def pick(value: float | None, full: float, quick: float) -> float:
        return value if value is not None else (quick if smoke else full)

    if args.out is not None:
        out = args.out
    elif smoke:
        out = Path(tempfile.mkdtemp(prefix="bench-smoke-"))
    else:
        out = RESULTS / started.strftime("%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True, exist_ok=True)
    drain_sinks = ["bench"] if smoke or not shutil.which("smtp-sink") else ["bench", "smtp-sink"]
    memory = [100, 1000] if smoke else [1000, 100_000]
    scenarios = args.scenarios or list(IN_REPO if smoke else (*IN_REPO, *PEERS))
    return Config(
        smoke=smoke,
        out=out,
        scenarios=scenarios,
        delays=args.delays,
        workers=args.workers,
        fractions=args.fractions,
        seconds=pick(args.seconds, 15, 1.5),
        closed_seconds=pick(args.closed_seconds, 10, 2),
        connections=args.connections,
        rate_cap=args.rate_cap if args.rate_cap is not None else (10.0 if smoke else None),
        closed_all=not smoke and not args.no_closed,
        drain_count=int(pick(args.drain, 10_000, 100)),
        drain_timeout=pick(args.drain_timeout, 900, 30),
        drain_sinks=args.drain_sinks or drain_sinks,
        memory_backlogs=args.memory if args.memory is not None else memory,
        memory_watch=pick(args.memory_watch, 20, 3),
        mail_wait=pick(args.mail_wait, 60, 20),
        request_timeout=pick(args.request_timeout, 30, 10),
        warmup=int(pick(args.warmup, 50, 5)),
        base_rate=args.base_rate,
        load=not args.no_load,
        wrk=not args.no_wrk and shutil.which("wrk") is not None,
        celery_pool=args.celery_pool,
        celery_concurrency=args.celery_concurrency,
        redis_url=args.redis_url,
    )


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
    results = asyncio.run(Harness(config).run())
    results["meta"] = {
        "started_at": started.isoformat(),
        "seconds": round(time.monotonic() - began, 1),
        "smoke": config.smoke,
        "command": shlex.join(["python", "-m", "bench", *argv]),
        "machine": machine(),
        "config": {
            key: str(value) if isinstance(value, Path) else value
            for key, value in vars(config).items()
        },
    }
    write(results, config.out)
    print((config.out / "results.md").read_text())
    print(f"bench: {results['meta']['seconds']} s, results in {config.out}", flush=True)
    if results["failures"]:
        print(f"bench: {len(results['failures'])} failure(s)", file=sys.stderr)
    # A full run records what failed (a peer that cannot run is a finding); a
    # smoke run is a check.
    return 1 if config.smoke and results["failures"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
