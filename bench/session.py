"""A session: the processes of one measurement, started in order and always stopped.

``async with Session(run, scenario, shape) as session:`` gives a fresh
database (a copy of the migrated template), an SMTP sink with the given delay,
the scenario's worker process if it has one, and uvicorn with the shape's
workers, warmed up. On leaving the block, however it is left, the processes
stop (last started first) and the database is dropped.

With ``backlog=N``, N mails are queued (through the scenario's own ``TASKS``
backend) before the worker and uvicorn start, and nothing is warmed up: the
drain and memory phases time the start itself.
"""

import asyncio
import re
import subprocess
import time
from types import TracebackType
from typing import TYPE_CHECKING

import httpx

from .backlog import address
from .databases import Database
from .procs import PYTHON, ROOT, Child, PostfixSink, Server, Sink, Usage
from .scenarios import Scenario, Shape

if TYPE_CHECKING:
    from .run import Run

ERROR_LINE = re.compile(r"^[\w.]*(Error|Exception)\b.*:")
WARMUP_CONCURRENCY = 8


class Broken(Exception):
    """The scenario cannot do its job at all (no mail arrives): skip the rest of it."""


class Session:
    def __init__(
        self,
        run: "Run",
        scenario: Scenario,
        shape: Shape,
        *,
        smtp_delay: float = 0.0,
        sink: str = "bench",  # or "smtp-sink", postfix's (it only counts mails)
        backlog: int = 0,
        serve: bool = True,  # start uvicorn (else the phase starts what it needs: spawn)
        env: dict[str, str] | None = None,  # settings on top of the run's
    ) -> None:
        self.run = run
        self.scenario = scenario
        self.shape = shape
        self.smtp_delay = smtp_delay
        self.tag = run.tag(f"{scenario.name}-{shape}")
        self.dirty = False  # it owes mails it did not deliver within the wait
        self.children: list[Child] = []
        self.database: Database | None = None
        self._sink_kind = sink
        self._backlog = backlog
        self._serve = serve
        self._extra_env = env or {}
        self.started_at = 0.0  # unix time the worker and uvicorn were started
        self.enqueue_seconds = 0.0  # how long queueing the backlog took
        self.backlog_prefix = f"{self.tag}-backlog"  # its addresses: backlog.address(prefix, i)

    # -- lifetime -------------------------------------------------------------

    async def __aenter__(self) -> "Session":
        try:
            self._start()
            if self._serve and not self._backlog:
                self.server.wait_ready()
                await self._warm_up()
        except BaseException:
            self.close()
            raise
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _start(self) -> None:
        run, scenario = self.run, self.scenario
        self.database = run.databases.fresh(self.shape.database, scenario.template)
        if scenario.worker == "celery":
            run.flush_broker()  # Older sessions' tasks.
        self.sink: Sink | PostfixSink = (
            Sink(run.raw, self.smtp_delay) if self._sink_kind == "bench" else PostfixSink(run.raw)
        )
        self.children.append(self.sink)
        self.env = run.env(scenario, self.database.url, self.sink.port) | self._extra_env
        if self._backlog:
            prefix = self.backlog_prefix
            code = f"from bench.backlog import queue; queue({prefix!r}, {self._backlog})"
            self.enqueue_seconds = self.manage("shell", "-v", "0", "-c", code, timeout=1800)
        self.started_at = time.time()
        self.worker = self._start_worker()
        if self._serve:
            log = run.raw / f"{self.tag}-uvicorn.log"
            self.server = Server(self.env, log, self.shape.workers)
            self.children.append(self.server)

    def close(self) -> None:
        """Stop the processes, last started first, then drop the database."""
        for child in reversed(self.children):
            child.stop(timeout=5)
        self.children.clear()
        if self.database is not None:
            self.database.drop()
            self.database = None

    def _start_worker(self) -> Child | None:
        config = self.run.config
        kind = self.scenario.worker
        if kind == "db_worker":
            # Its defaults, as documented: one task at a time, 1 s idle poll.
            command = [PYTHON, "manage.py", "db_worker", "--no-reload", "--no-startup-delay"]
            return self.spawn("db_worker", command, ready="Starting worker", timeout=30)
        if kind == "celery":
            command = [PYTHON, "-m", "celery", "-A", "bench.celery_app", "worker"]
            command += ["--pool", config.celery_pool]
            command += ["--concurrency", str(config.celery_concurrency)]
            command += ["--loglevel", "INFO", "--without-gossip", "--without-mingle"]
            return self.spawn("celery", command, ready="ready.", timeout=60)
        return None

    def spawn(self, name: str, command: list[str], ready: str, timeout: float) -> Child:
        """Start a process the session owns, and wait until it logs ``ready``."""
        child = Child(name, command, self.env, self.run.raw / f"{self.tag}-{name}.log")
        self.children.append(child)
        child.wait_for_log(ready, timeout=timeout)
        return child

    def manage(self, *args: str, timeout: float = 600) -> float:
        """Run ``manage.py`` with the session's settings; returns its wall time."""
        began = time.monotonic()
        subprocess.run(
            [PYTHON, "manage.py", *args], cwd=ROOT, env=self.env, check=True, timeout=timeout
        )
        return time.monotonic() - began

    async def _warm_up(self) -> None:
        """The first requests of a process (imports, connections) are not measured."""
        config = self.run.config
        prefix = f"{self.tag}-warm"
        async with httpx.AsyncClient(timeout=config.request_timeout) as client:
            for start in range(0, config.warmup, WARMUP_CONCURRENCY):
                batch = range(start, min(config.warmup, start + WARMUP_CONCURRENCY))
                await asyncio.gather(
                    *(client.post(self.url, json={"email": address(prefix, i)}) for i in batch)
                )
        if self.scenario.sends_mail and isinstance(self.sink, Sink):
            wanted = {address(prefix, i) for i in range(config.warmup)}
            self.dirty = not await self.sink.wait_for(wanted, config.mail_wait)
            if not wanted & self.sink.first.keys():
                raise Broken(
                    f"none of {len(wanted)} warm-up mails arrived within "
                    f"{config.mail_wait} s; last error logged: {self.last_error()}"
                )

    # -- while it runs ----------------------------------------------------------

    @property
    def url(self) -> str:
        """Where the scenario's signups are posted."""
        return self.server.url + self.scenario.path

    def usage(self) -> Usage:
        """CPU and RSS of uvicorn's and the worker's process trees, sampled from now."""
        roots = {"server": self.server.pid} if self._serve else {}
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


class SessionSlot:
    """At most one open session of (scenario, shape, SMTP delay), reused while it owes no mail.

    A load whose mails did not all arrive within the wait leaves its session
    dirty; the next ``get`` then starts a fresh one, so no backlog carries
    over into another measurement.
    """

    def __init__(self, run: "Run", scenario: Scenario, shape: Shape, smtp_delay: float) -> None:
        self._args = (run, scenario, shape)
        self._smtp_delay = smtp_delay
        self._session: Session | None = None

    async def get(self) -> Session:
        if self._session is not None and not self._session.dirty:
            return self._session
        self.close()
        self._session = await Session(*self._args, smtp_delay=self._smtp_delay).__aenter__()
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    async def __aenter__(self) -> "SessionSlot":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
