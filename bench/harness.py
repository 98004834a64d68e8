"""One benchmark run: sessions of (scenario, SMTP delay, uvicorn workers), their loads and mails.

A session is a fresh SQLite database (copied from a migrated template), an
SMTP sink with the given delay, the scenario's worker process if it has one,
and uvicorn. In a session the open-loop rates run one after the other; after
each, the harness waits for the mails of the signups it made. If some do not
arrive within the wait, the next rate gets a fresh session, so no backlog
carries over into another measurement.
"""

import asyncio
import json
import os
import re
import resource
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from .backlog import address
from .loadgen import closed_loop, open_loop
from .procs import PYTHON, ROOT, Child, PostfixSink, Server, Sink, Usage

ERROR_LINE = re.compile(r"^[\w.]*(Error|Exception)\b.*:")


class Broken(Exception):
    """The scenario cannot do its job at all (no mail arrives): skip the rest of it."""


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str  # where the signups are posted
    sends_mail: bool = True
    queues: bool = True  # the mail goes through TASKS: it has a drain rate
    worker: str | None = None  # a worker process beside uvicorn: "db_worker" or "celery"

    @property
    def template(self) -> str:
        """Scenarios with the same INSTALLED_APPS share a migrated database template."""
        return self.name if self.name in ("tasks-db", "vtasks") else "base"


SCENARIOS = {
    scenario.name: scenario
    for scenario in (
        Scenario("floor-hello", "/bench/floor-hello/", sends_mail=False, queues=False),
        Scenario("floor-insert", "/bench/floor-insert/", sends_mail=False, queues=False),
        Scenario("inline", "/bench/inline/", queues=False),
        Scenario("project", "/signup/"),
        Scenario("tasks-db", "/signup/", worker="db_worker"),
        Scenario("celery", "/signup/", worker="celery"),
        Scenario("vtasks", "/signup/"),
    )
}
IN_REPO = ("floor-hello", "floor-insert", "inline", "project")
PEERS = ("tasks-db", "celery", "vtasks")
BASELINE = "floor-insert"
WARMUP_CONCURRENCY = 8


@dataclass
class Config:
    smoke: bool
    out: Path
    scenarios: list[str]
    delays: list[float]
    workers: list[int]
    fractions: list[float]
    seconds: float  # per open-loop rate
    closed_seconds: float
    connections: int
    rate_cap: float | None  # smoke: rates are fractions of min(max throughput, cap)
    closed_all: bool  # closed-loop maximum for every scenario, not only the baseline
    drain_count: int
    drain_timeout: float
    drain_sinks: list[str]  # "bench" (the harness's sink) and/or "smtp-sink" (postfix's)
    memory_backlogs: list[int]  # queued mails for the server's RSS (the product only)
    memory_watch: float  # s the server runs with each backlog while its RSS is sampled
    mail_wait: float
    request_timeout: float
    warmup: int  # requests per session before any measurement, mails waited for
    load: bool  # the load phases (maximum, open loop); without: only drain and memory
    base_rate: float | None  # given instead of measured: the rates' 100 %
    wrk: bool  # also probe the maximum with wrk (C), which needs far less CPU than Python
    celery_pool: str
    celery_concurrency: int
    redis_url: str


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of ``values`` (not empty)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil without floats' surprises
    return ordered[int(min(rank, len(ordered))) - 1]


def spread_ms(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    figures = {f"p{p}": percentile(values, p) for p in (50, 90, 99, 99.9)}
    figures |= {"min": min(values), "max": max(values)}
    return {key: round(1000 * value, 2) for key, value in figures.items()}


def stop_and_remove(children: list[Child], db: Path | None) -> None:
    """Stop the processes, last started first, then delete the database and its -wal, -shm."""
    for child in reversed(children):
        child.stop(timeout=5)
    if db is not None:
        for path in db.parent.glob(db.name + "*"):
            path.unlink()


@dataclass
class Answer:
    status: str
    due: float  # unix time the request was due
    done: float  # unix time its answer arrived


@dataclass
class Session:
    """The processes of one (scenario, delay, workers) measurement."""

    harness: "Harness"
    scenario: Scenario
    delay: float
    workers: int
    dirty: bool = False  # mails it owes were not delivered within the wait
    children: list[Child] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tag = self.harness.next_tag(self.scenario.name)
        self.db = self.harness.fresh_database(self.scenario, self.tag)
        self.harness.fresh_broker(self.scenario)
        try:
            self.sink = Sink(self.harness.raw, self.delay)
            self.children.append(self.sink)
            self.env = self.harness.env(self.scenario, self.db, self.sink.port)
            self.worker = self.harness.start_worker(self.scenario, self.env, self.tag)
            if self.worker is not None:
                self.children.append(self.worker)
            log = self.harness.raw / f"{self.tag}-uvicorn.log"
            self.server = Server(self.env, log, self.workers)
            self.children.append(self.server)
            self.server.wait_ready()
        except BaseException:
            self.close()
            raise

    def usage(self) -> Usage:
        roots = {"server": self.server.pid}
        if self.worker is not None:
            roots["worker"] = self.worker.pid
        return Usage(roots).start()

    def last_error(self) -> str | None:
        """The last exception line its processes logged, if any."""
        errors = [
            line.strip()
            for child in self.children
            for line in child.log().splitlines()
            if ERROR_LINE.match(line)
        ]
        return errors[-1] if errors else None

    def close(self) -> None:
        stop_and_remove(self.children, self.db)


class Harness:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.raw = config.out / "raw"
        self.raw.mkdir(parents=True, exist_ok=True)
        self._templates: dict[str, Path] = {}
        self._tags = 0
        self.broken: dict[str, str] = {}
        self.results: dict[str, Any] = {
            "max_throughput": [],
            "open_loop": [],
            "drain": [],
            "memory": [],
            "failures": [],
            "notes": [],
        }

    # -- plumbing -----------------------------------------------------------

    def next_tag(self, name: str) -> str:
        self._tags += 1
        return f"{name}-{self._tags}"

    def env(self, scenario: Scenario, db: Path, smtp_port: int) -> dict[str, str]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "BENCH_SCENARIO": scenario.name,
            "BENCH_CELERY_BROKER": self.config.redis_url,
            "DEBUG": "0",
            "SECRET_KEY": "bench-only-not-secret",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SITE_URL": "http://127.0.0.1",
            "DATABASE_URL": f"sqlite:///{db}",
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(smtp_port),
            "SIGNUP_RATE_PER_IP": "off",
            "MAIL_RATE_PER_ADDRESS": "off",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        return env

    def manage(self, env: dict[str, str], *args: str, timeout: float = 600) -> float:
        """Run ``manage.py`` with ``args``; returns its wall time."""
        began = time.monotonic()
        subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True, timeout=timeout)
        return time.monotonic() - began

    def fresh_database(self, scenario: Scenario, tag: str) -> Path:
        template = self._templates.get(scenario.template)
        if template is None:
            template = self.raw / f"template-{scenario.template}.sqlite3"
            for stale in template.parent.glob(template.name + "*"):
                stale.unlink()
            env = self.env(scenario, template, 25)
            self.manage(env, "migrate", "--no-input", "-v", "0", timeout=300)
            self._templates[scenario.template] = template
        db = self.raw / f"{tag}.sqlite3"
        for stale in db.parent.glob(db.name + "*"):  # An interrupted run's -wal, -shm.
            stale.unlink()
        shutil.copyfile(template, db)
        return db

    def fresh_broker(self, scenario: Scenario) -> None:
        """Celery: empty the broker's database (the harness's own index) of older runs' tasks."""
        if scenario.worker == "celery":
            import redis

            redis.Redis.from_url(self.config.redis_url).flushdb()

    def start_worker(self, scenario: Scenario, env: dict[str, str], tag: str) -> Child | None:
        log = self.raw / f"{tag}-worker.log"
        if scenario.worker == "db_worker":
            # Its defaults, as documented: one task at a time, 1 s idle poll.
            command = [PYTHON, "manage.py", "db_worker", "--no-reload", "--no-startup-delay"]
            worker = Child("db_worker", command, env, log)
            worker.wait_for_log("Starting worker", timeout=30)
            return worker
        if scenario.worker == "celery":
            command = [PYTHON, "-m", "celery", "-A", "bench.celery_app", "worker"]
            command += ["--pool", self.config.celery_pool]
            command += ["--concurrency", str(self.config.celery_concurrency)]
            command += ["--loglevel", "INFO", "--without-gossip", "--without-mingle"]
            worker = Child("celery", command, env, log)
            worker.wait_for_log("ready.", timeout=60)
            return worker
        return None

    async def session(self, scenario: Scenario, delay: float, workers: int) -> Session:
        """A fresh session, warmed up: the first requests of a process are not measured."""
        session = Session(self, scenario, delay, workers)
        try:
            prefix = f"{session.tag}-warm"
            url = session.server.url + scenario.path
            async with httpx.AsyncClient(timeout=self.config.request_timeout) as client:
                for start in range(0, self.config.warmup, WARMUP_CONCURRENCY):
                    batch = range(start, min(self.config.warmup, start + WARMUP_CONCURRENCY))
                    await asyncio.gather(
                        *(client.post(url, json={"email": address(prefix, i)}) for i in batch)
                    )
            if scenario.sends_mail:
                wanted = {address(prefix, i) for i in range(self.config.warmup)}
                session.dirty = not await session.sink.wait_for(wanted, self.config.mail_wait)
                if not wanted & session.sink.first.keys():
                    raise Broken(
                        f"none of {len(wanted)} warm-up mails arrived within "
                        f"{self.config.mail_wait} s; last error logged: {session.last_error()}"
                    )
        except BaseException:
            session.close()
            raise
        return session

    def fail(self, what: str) -> None:
        print(f"  FAIL: {what}", flush=True)
        self.results["failures"].append(what)

    # -- measurements -------------------------------------------------------

    async def closed(self, session: Session) -> dict[str, Any]:
        scenario = session.scenario
        prefix = f"{session.tag}-max"
        usage = session.usage()
        result = await closed_loop(
            session.server.url + scenario.path,
            self.config.connections,
            self.config.closed_seconds,
            lambda i: {"email": address(prefix, i)},
            timeout=self.config.request_timeout,
        )
        record = {
            "scenario": scenario.name,
            "workers": session.workers,
            "smtp_delay": session.delay,
            "client": "python",
            **result.summary(),
            **(await usage.stop()),
        }
        session.dirty = scenario.sends_mail  # The mails of a flood are not waited for.
        self.results["max_throughput"].append(record)
        self.check_statuses(record, record["statuses"])
        print(
            f"  max {scenario.name} w={session.workers} delay={session.delay}s: "
            f"{record['rate']} req/s, statuses {record['statuses']}, "
            f"client CPU {record['client_cpu_percent']} %",
            flush=True,
        )
        return record

    async def closed_wrk(self, session: Session) -> dict[str, Any]:
        """The same probe with wrk: a Python client can saturate before the server does."""
        scenario = session.scenario
        seconds = self.config.closed_seconds
        command = ["wrk", "-t1", f"-c{self.config.connections}", f"-d{seconds:g}s"]
        command += ["--timeout", f"{self.config.request_timeout:g}s"]
        command += ["-s", str(Path(__file__).with_name("wrk_signup.lua"))]
        env = {**os.environ, "WRK_PREFIX": f"{session.tag}-wrk"}
        usage = session.usage()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        wrk = await asyncio.create_subprocess_exec(
            *command,
            session.server.url + scenario.path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(wrk.communicate(), timeout=seconds + 60)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        used = await usage.stop()
        session.dirty = scenario.sends_mail
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
        record = {
            "scenario": scenario.name,
            "workers": session.workers,
            "smtp_delay": session.delay,
            "client": "wrk",
            "connections": self.config.connections,
            "seconds": round(elapsed, 3),
            "requests": figures["requests"],
            "rate": round(ok / elapsed, 1),
            "statuses": {"2xx/3xx": ok, **errors},
            "client_cpu_percent": round(100 * client_cpu / elapsed, 1),
            **used,
        }
        self.results["max_throughput"].append(record)
        if errors:
            self.fail(f"{scenario.name} w={session.workers} delay={session.delay}s: wrk {errors}")
        print(
            f"  max (wrk) {scenario.name} w={session.workers} delay={session.delay}s: "
            f"{record['rate']} req/s, {record['statuses']}, "
            f"client CPU {record['client_cpu_percent']} %",
            flush=True,
        )
        return record

    async def open(self, session: Session, fraction: float, rate: float) -> dict[str, Any]:
        scenario = session.scenario
        prefix = f"{session.tag}-{int(fraction * 100)}"
        answers: dict[int, Answer] = {}

        def note(i: int, status: str, due: float, done: float) -> None:
            answers[i] = Answer(status, due, done)

        usage = session.usage()
        result = await open_loop(
            session.server.url + scenario.path,
            rate,
            self.config.seconds,
            lambda i: {"email": address(prefix, i)},
            on_response=note,
            timeout=self.config.request_timeout,
        )
        record: dict[str, Any] = {
            "scenario": scenario.name,
            "workers": session.workers,
            "smtp_delay": session.delay,
            "fraction": fraction,
            **result.summary(),
            **(await usage.stop()),
        }
        if scenario.sends_mail:
            record["mail"] = await self.mails(session, prefix, answers)
        self.results["open_loop"].append(record)
        self.check_statuses(record, record["statuses"])
        latency = record["latency_ms"]
        mail = record.get("mail") or {}
        tti = (mail.get("time_to_inbox_ms") or {}).get("p99")
        print(
            f"  {scenario.name} w={session.workers} delay={session.delay}s "
            f"{int(fraction * 100)}% = {rate:.1f}/s: p50 {latency['p50']:.1f} "
            f"p99 {latency['p99']:.1f} max {latency['max']:.1f} ms, {record['statuses']}"
            + (f", inbox p99 {tti} ms, lost {mail.get('undelivered')}" if mail else ""),
            flush=True,
        )
        return record

    async def mails(self, session: Session, prefix: str, answers: dict[int, Answer]) -> Any:
        sink = session.sink
        expected = {address(prefix, i): a for i, a in answers.items() if a.status == "201"}
        complete = await sink.wait_for(set(expected), self.config.mail_wait)
        sink.poll()
        arrived = {a: sink.first[a] for a in expected if a in sink.first}
        session.dirty = not complete
        stray = [r for r in sink.first if r.startswith(prefix + "-") and r not in expected]
        record = {
            "expected": len(expected),
            "delivered": len(arrived),
            "undelivered": len(expected) - len(arrived),
            "waited_s": self.config.mail_wait,
            "duplicates": sum(sink.received[a] - 1 for a in arrived),
            "stray": len(stray),  # mails for requests that got no 201
            # From the answer (after the commit) to the sink's 250: a lower bound
            # of commit-to-250, negative when the mail is sent before the answer.
            "time_to_inbox_ms": spread_ms([t - expected[a].done for a, t in arrived.items()]),
            # From the moment the request was due: an upper bound.
            "due_to_inbox_ms": spread_ms([t - expected[a].due for a, t in arrived.items()]),
        }
        if record["undelivered"]:
            self.fail(
                f"{session.scenario.name} w={session.workers} delay={session.delay}s: "
                f"{record['undelivered']} of {len(expected)} mails not delivered "
                f"within {self.config.mail_wait} s"
            )
        return record

    def check_statuses(self, record: dict[str, Any], statuses: dict[str, int]) -> None:
        bad = {s: n for s, n in statuses.items() if not s.isdigit() or int(s) >= 500}
        if bad:
            self.fail(
                f"{record['scenario']} w={record['workers']} delay={record['smtp_delay']}s: "
                f"errors {bad}"
            )

    async def backlog_session(
        self, scenario: Scenario, workers: int, count: int, sink: Sink | PostfixSink
    ) -> tuple[Server, Child | None, Path, float, float]:
        """Queue ``count`` mails with nothing running, then start the worker and uvicorn.

        Returns the server, the worker, the database, the seconds the enqueueing
        took and the unix time the processes started.
        """
        tag = self.next_tag(scenario.name)
        db = self.fresh_database(scenario, tag)
        env = self.env(scenario, db, sink.port)
        self.fresh_broker(scenario)
        code = f"from bench.backlog import queue; queue({f'{tag}-backlog'!r}, {count})"
        enqueue_s = self.manage(env, "shell", "-v", "0", "-c", code, timeout=1800)
        began = time.time()
        worker = self.start_worker(scenario, env, tag)
        try:
            server = Server(env, self.raw / f"{tag}-uvicorn.log", workers)
        except BaseException:
            if worker is not None:
                worker.stop(timeout=5)
            raise
        return server, worker, db, enqueue_s, began

    async def drain(self, scenario: Scenario, workers: int, sink_kind: str) -> dict[str, Any]:
        """Queue N mails with nothing running, then start everything and time the sends.

        ``sink_kind`` "bench" is the harness's sink (the same for every scenario);
        "smtp-sink" is postfix's, which only counts, for the raw delivery speed.
        """
        count = self.config.drain_count
        sink: Sink | PostfixSink = (
            Sink(self.raw, 0.0) if sink_kind == "bench" else PostfixSink(self.raw)
        )
        children: list[Child] = [sink]
        db: Path | None = None
        try:
            server, worker, db, enqueue_s, began = await self.backlog_session(
                scenario, workers, count, sink
            )
            children += [c for c in (worker, server) if c is not None]
            roots = {"server": server.pid} | ({"worker": worker.pid} if worker else {})
            usage = Usage(roots).start()
            first, last, delivered = await self.wait_for_backlog(sink, count)
            used = await usage.stop()
        finally:
            stop_and_remove(children, db)
        span = last - first if first is not None and last is not None else 0.0
        record = {
            "scenario": scenario.name,
            "workers": workers,
            "sink": sink_kind,
            "queued": count,
            "enqueue_seconds": round(enqueue_s, 2),
            "delivered": delivered,
            "complete": delivered >= count,
            "seconds_from_start": round(last - began, 2) if last else None,
            "seconds_first_to_last": round(span, 2),
            "mails_per_s": round((delivered - 1) / span, 1) if span else None,
            "mails_per_s_from_start": round(delivered / (last - began), 1) if last else None,
            **used,
        }
        if isinstance(sink, Sink):
            record["duplicates"] = sum(n - 1 for n in sink.received.values())
        if not record["complete"]:
            self.fail(
                f"drain {scenario.name} w={workers} ({sink_kind}): {delivered} of {count} "
                f"mails within {self.config.drain_timeout} s"
            )
        self.results["drain"].append(record)
        print(
            f"  drain {scenario.name} w={workers} {sink_kind}: {delivered}/{count} mails, "
            f"{record['mails_per_s']} mails/s (first to last), "
            f"{record['mails_per_s_from_start']} mails/s from start",
            flush=True,
        )
        return record

    async def wait_for_backlog(
        self, sink: Sink | PostfixSink, count: int
    ) -> tuple[float | None, float | None, int]:
        """(first arrival, last arrival, mails delivered) once all arrived or time ran out."""
        if isinstance(sink, Sink):
            await sink.wait_for_count(count, self.config.drain_timeout)
            times = sorted(sink.first.values())
            return (times[0], times[-1], len(times)) if times else (None, None, 0)
        # smtp-sink prints a counter, not times: poll it.
        deadline = time.monotonic() + self.config.drain_timeout
        first: float | None = None
        last: float | None = None
        seen = 0
        while seen < count and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            now, current = time.time(), sink.count()
            if current > seen:
                first = first or now
                last, seen = now, current
        return first, last, seen

    async def memory(self, workers: int) -> dict[str, Any]:
        """The product's server RSS with a small and a large backlog in its ledger."""
        record: dict[str, Any] = {
            "scenario": "project",
            "workers": workers,
            "watch_s": self.config.memory_watch,
        }
        for count in self.config.memory_backlogs:
            sink = Sink(self.raw, 0.0)
            children: list[Child] = [sink]
            db: Path | None = None
            try:
                scenario = SCENARIOS["project"]
                server, _, db, enqueue_s, _ = await self.backlog_session(
                    scenario, workers, count, sink
                )
                children.append(server)
                usage = Usage({"server": server.pid}).start()
                await asyncio.sleep(self.config.memory_watch)
                sink.poll()
                used = await usage.stop()
            finally:
                stop_and_remove(children, db)
            record[str(count)] = {
                "enqueue_seconds": round(enqueue_s, 2),
                "sent_while_watched": len(sink.first),
                **used,
            }
            print(
                f"  memory project w={workers} {count} queued: server RSS peak "
                f"{used['server']['rss_peak_mb']} MB, {len(sink.first)} sent in "
                f"{self.config.memory_watch} s",
                flush=True,
            )
        self.results["memory"].append(record)
        return record

    # -- the whole run ------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        config = self.config
        for workers in config.workers:
            print(f"uvicorn --workers {workers}", flush=True)
            if config.load:
                await self.load(workers)
            for name in config.scenarios:
                if SCENARIOS[name].queues and config.drain_count > 0:
                    for sink_kind in config.drain_sinks:
                        await self.guarded(
                            name, partial(self.drain, SCENARIOS[name], workers, sink_kind)
                        )
            if "project" in config.scenarios and config.memory_backlogs:
                await self.guarded("project", partial(self.memory, workers))
        self.results["broken"] = self.broken
        return self.results

    async def load(self, workers: int) -> None:
        """The maximum of the baseline, then every scenario's open-loop rates and maxima."""
        config = self.config
        base = config.base_rate
        if base is None:
            session = await self.session(SCENARIOS[BASELINE], 0.0, workers)
            try:
                base = (await self.closed(session))["rate"]
                if config.wrk:
                    await self.closed_wrk(session)
            finally:
                session.close()
        ceiling = base if config.rate_cap is None else min(base, config.rate_cap)
        rates = [(fraction, round(fraction * ceiling, 1)) for fraction in config.fractions]
        for name in config.scenarios:
            for delay in config.delays:
                await self.guarded(name, partial(self.scenario_runs, name, delay, workers, rates))

    async def guarded(self, name: str, step: Callable[[], Awaitable[Any]]) -> None:
        """A scenario that cannot run at all is a finding, not the end of the run."""
        if name in self.broken:
            return
        try:
            await step()
        except Broken as error:
            self.broken[name] = str(error)
            self.fail(f"{name}: {error} (the rest of {name} is skipped)")
        except Exception as error:
            self.fail(f"{name}: {type(error).__name__}: {str(error)[-2000:]}")

    async def scenario_runs(
        self, name: str, delay: float, workers: int, rates: list[tuple[float, float]]
    ) -> None:
        scenario = SCENARIOS[name]
        session: Session | None = None
        try:
            for fraction, rate in rates:
                if session is None or session.dirty:
                    if session is not None:
                        session.close()
                    session = await self.session(scenario, delay, workers)
                await self.open(session, fraction, rate)
            if self.config.closed_all and not (name == BASELINE and delay == 0):
                probes = [self.closed, self.closed_wrk] if self.config.wrk else [self.closed]
                for probe in probes:
                    if session is None or session.dirty:
                        if session is not None:
                            session.close()
                        session = await self.session(scenario, delay, workers)
                    await probe(session)
        finally:
            if session is not None:
                session.close()
