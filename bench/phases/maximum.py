"""Closed-loop maximum: ``--connections`` clients post as fast as answers come.

Not a rate the service sustains (the mails of the flood are still owed when
it ends; the sustained phase has that figure), but where the request path
saturates. Measured twice: with the Python client (``loadgen.closed_loop``)
and with ``wrk`` (``wrk_signup.lua``), whose client needs far less CPU; on 2
cores a Python client competes with the server, so both are kept, with the
client's CPU.
"""

import asyncio
import json
import os
import resource
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backlog import address
from ..criteria import WRK_OK
from ..loadgen import closed_loop
from ..scenarios import Scenario, Shape
from ..session import Session

if TYPE_CHECKING:
    from ..run import Run

WRK_SCRIPT = Path(__file__).resolve().parent.parent / "wrk_signup.lua"


def applies(scenario: Scenario, shape: Shape) -> bool:
    return True


async def run(run: "Run", shape: Shape, scenarios: list[Scenario]) -> None:
    for scenario in scenarios:
        await run.guarded(scenario, shape, partial(_probe, run, scenario, shape))


async def _probe(run: "Run", scenario: Scenario, shape: Shape) -> None:
    # A flood leaves mails owed: each probe gets its own session.
    probes = [_python, _wrk] if run.config.wrk else [_python]
    for probe in probes:
        async with Session(run, scenario, shape) as session:
            record = await probe(run, session)
        run.record("maximum", record)
        run.check_answers(f"maximum ({record['client']}) {scenario.name} {shape}", record)
        print(
            f"  max ({record['client']}) {scenario.name} {shape}: {record['rate']} req/s, "
            f"{record['statuses']}, client CPU {record['client_cpu_percent']} %",
            flush=True,
        )


async def _python(run: "Run", session: Session) -> dict[str, Any]:
    config = run.config
    prefix = f"{session.tag}-max"
    usage = session.usage()
    result = await closed_loop(
        session.url,
        config.connections,
        config.closed_seconds,
        lambda i: {"email": address(prefix, i)},
        timeout=config.request_timeout,
    )
    return {**run.where(session), "client": "python", **result.summary(), **(await usage.stop())}


async def _wrk(run: "Run", session: Session) -> dict[str, Any]:
    config = run.config
    seconds = config.closed_seconds
    command = ["wrk", "-t1", f"-c{config.connections}", f"-d{seconds:g}s"]
    command += ["--timeout", f"{config.request_timeout:g}s", "-s", str(WRK_SCRIPT)]
    env = {**os.environ, "WRK_PREFIX": f"{session.tag}-wrk"}
    usage = session.usage()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk = await asyncio.create_subprocess_exec(
        *command,
        session.url,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(wrk.communicate(), timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = await usage.stop()
    text = output.decode(errors="replace")
    line = next((x for x in text.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {text[-2000:]}")
    figures = json.loads(line.removeprefix("BENCH "))
    elapsed = figures["duration_us"] / 1e6
    errors = {
        key: figures[key]
        for key in ("status_errors", "connect", "read", "write", "timeout")
        if figures[key]
    }
    ok = figures["requests"] - figures["status_errors"]
    client_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {
        **run.where(session),
        "client": "wrk",
        "connections": config.connections,
        "seconds": round(elapsed, 3),
        "requests": figures["requests"],
        "rate": round(ok / elapsed, 1),
        "statuses": {WRK_OK: ok, **errors},
        "client_cpu_percent": round(100 * client_cpu / elapsed, 1),
        **used,
    }
