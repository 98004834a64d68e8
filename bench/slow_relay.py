"""One process against a slow SMTP relay: mails per second, and signup latency.

    .venv/bin/python -m bench.slow_relay throughput --smtp-delay 2 --signups 300
    .venv/bin/python -m bench.slow_relay latency --smtp-delay 0 --rate 50 --seconds 20

One uvicorn worker with the product's default settings (rate limits off), a
fresh SQLite database (or ``--database-url``), and the tests' SMTP server
(``tests/smtp_server.py``) answering every DATA after ``--smtp-delay`` seconds,
in a process of its own so the load generator does not share its GIL.

``throughput`` queues ``--signups`` signups as fast as the service takes them,
then counts, through ``/healthz``, how long until every job is SUCCESSFUL.
``latency`` posts open loop at ``--rate`` for ``--seconds`` (request *i* due at
t0 + i/rate and timed from then) and prints the percentiles. Any other setting
can be passed as ``--env NAME=value``.
"""

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from tests.support.ports import free_port
from tests.support.service import ROOT, ServiceProcess, base_env, migrate
from tests.support.smtp_server import SMTPTestServer

# base_env's test shortcuts that would change what is measured.
TEST_OVERRIDES = ("TASKS_POLL_INTERVAL", "TASKS_LEASE_SECONDS", "TASKS_RETRY_BASE_DELAY")
QUEUE_CONNECTIONS = 16


def serve_smtp(port: int, delay: float) -> None:
    server = SMTPTestServer(delay=delay, port=port).start()
    try:
        while True:
            time.sleep(3600)
    finally:
        server.stop()


def start_smtp(delay: float) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    command = [sys.executable, "-m", "bench.slow_relay", "serve-smtp", str(port), str(delay)]
    process = subprocess.Popen(command, cwd=ROOT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                if probe.recv(3) == b"220":  # The banner.
                    probe.sendall(b"QUIT\r\n")
                    return process, port
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("SMTP server did not start")


def start_service(
    directory: Path, smtp_port: int, database_url: str, extra: list[str], backlog: int = 0
) -> ServiceProcess:
    env = base_env(database_url or f"sqlite:///{directory / 'db.sqlite3'}", smtp_port)
    for name in TEST_OVERRIDES:
        env.pop(name)
    for item in extra:
        name, _, value = item.partition("=")
        env[name] = value
    migrate(env)
    if backlog:
        # Queued the way sync code would, before any runner is up.
        code = f"from bench.backlog import queue; queue('backlog', {backlog})"
        subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, check=True
        )
    return ServiceProcess(env, directory / "service.log").start()


async def queue_signups(url: str, count: int) -> float:
    """Post ``count`` signups over a few connections; returns seconds taken."""
    began = time.monotonic()
    addresses = iter(f"relay-{uuid.uuid4().hex[:12]}@example.com" for _ in range(count))
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def post_some() -> None:
            for address in addresses:
                response = await client.post("/signup/", json={"email": address})
                assert response.status_code == 201, response.text

        await asyncio.gather(*(post_some() for _ in range(QUEUE_CONNECTIONS)))
    return time.monotonic() - began


def throughput(service: ServiceProcess, signups: int, backlog: int, timeout: float) -> None:
    began = time.monotonic()
    queued_in = asyncio.run(queue_signups(service.url, signups))
    total = signups + backlog
    samples: list[tuple[float, int]] = []  # (seconds since began, mails sent)
    while time.monotonic() < began + timeout:
        samples.append((time.monotonic() - began, service.job_counts().get("SUCCESSFUL", 0)))
        if samples[-1][1] >= total:
            break
        time.sleep(0.1)
    elapsed, sent = samples[-1]
    # Between 20 % and 80 % sent: the rate without the first connections' set-up
    # and the last, partly filled round.
    t20 = next(t for t, n in samples if n >= 0.2 * sent)
    t80 = next(t for t, n in samples if n >= 0.8 * sent)
    steady = 0.6 * sent / (t80 - t20) if t80 > t20 else float("nan")
    print(
        f"{sent}/{total} mails sent in {elapsed:.1f} s (signups queued in {queued_in:.1f} s): "
        f"{sent / elapsed:.1f} mails/s overall, {steady:.1f} mails/s from 20 to 80 % sent"
    )


async def open_loop(url: str, rate: float, seconds: float) -> list[float]:
    total = int(rate * seconds)
    latencies: list[float] = []
    failures: dict[str, int] = {}
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def post(due: float) -> None:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            address = f"relay-{uuid.uuid4().hex[:12]}@example.com"
            try:
                response = await client.post("/signup/", json={"email": address})
                status = str(response.status_code)
            except httpx.TransportError as error:
                status = type(error).__name__
            latencies.append(time.monotonic() - due)
            if status != "201":
                failures[status] = failures.get(status, 0) + 1

        t0 = time.monotonic() + 0.5
        await asyncio.gather(*(post(t0 + i / rate) for i in range(total)))
    if failures:
        print(f"failures: {failures}")
    return sorted(latencies)


def latency(service: ServiceProcess, rate: float, seconds: float) -> None:
    # A short warm-up, so the first requests' imports and connections are not measured.
    asyncio.run(queue_signups(service.url, 50))
    values = asyncio.run(open_loop(service.url, rate, seconds))
    figures = {p: values[min(len(values) - 1, int(p / 100 * len(values)))] for p in (50, 90, 99)}
    print(
        f"{len(values)} signups at {rate:g}/s: "
        + ", ".join(f"p{p} {value * 1000:.1f} ms" for p, value in figures.items())
        + f", max {values[-1] * 1000:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve-smtp")
    serve.add_argument("port", type=int)
    serve.add_argument("delay", type=float)
    for name in ("throughput", "latency"):
        command = commands.add_parser(name)
        command.add_argument("--smtp-delay", type=float, default=2.0)
        command.add_argument("--database-url", default="")
        command.add_argument("--env", action="append", default=[], metavar="NAME=value")
        if name == "throughput":
            command.add_argument("--signups", type=int, default=300)
            command.add_argument(
                "--backlog", type=int, default=0, help="jobs queued before the service starts"
            )
            command.add_argument("--timeout", type=float, default=300)
        else:
            command.add_argument("--rate", type=float, default=50)
            command.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    if args.command == "serve-smtp":
        serve_smtp(args.port, args.delay)
        return
    smtp, port = start_smtp(args.smtp_delay)
    try:
        with tempfile.TemporaryDirectory() as directory:
            backlog = getattr(args, "backlog", 0)
            service = start_service(Path(directory), port, args.database_url, args.env, backlog)
            try:
                if args.command == "throughput":
                    throughput(service, args.signups, backlog, args.timeout)
                else:
                    latency(service, args.rate, args.seconds)
            finally:
                service.stop()
    finally:
        smtp.kill()
        smtp.wait()


if __name__ == "__main__":
    main()
