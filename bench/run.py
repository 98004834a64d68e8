"""One benchmark run: for each shape, the phases in order, each over the scenarios it applies to.

The run owns what outlives a session (the database templates, the results,
the failures) and decides which scenarios a phase sees; the phases
(``bench/phases/``) measure, and the sessions (``bench/session.py``) own the
processes.
"""

import os
import subprocess
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from .config import SMOKE_OTHER_SHAPES, SMOKE_SCENARIOS, Config
from .criteria import bad_statuses
from .databases import Databases
from .phases import PHASES
from .procs import PYTHON, ROOT
from .scenarios import SCENARIOS, Scenario, Shape
from .session import Broken, Session


class Run:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.raw = config.out / "raw"
        self.raw.mkdir(parents=True, exist_ok=True)
        self.databases = Databases(self.raw, config.postgres_url, self._migrate)
        self._tags = 0
        self.broken: dict[str, str] = {}  # "scenario shape" -> why it cannot run
        self.results: dict[str, Any] = {name: [] for name in PHASES}
        self.results |= {"failures": [], "notes": []}

    async def __aenter__(self) -> "Run":
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.databases.close()

    async def execute(self) -> dict[str, Any]:
        for shape in self.config.shapes:
            print(f"{shape}", flush=True)
            for name, phase in PHASES.items():
                if name in self.config.phases:
                    await phase.run(self, shape, self.scenarios_for(name, shape))
        self.results["broken"] = self.broken
        return self.results

    def scenarios_for(self, phase: str, shape: Shape) -> list[Scenario]:
        """The selected scenarios the phase applies to, on this shape."""
        config = self.config
        first = shape == config.shapes[0]
        names = [n for n in config.scenarios if first or SCENARIOS[n].every_shape]
        if config.peer_shapes is not None and str(shape) not in config.peer_shapes:
            names = [n for n in names if not SCENARIOS[n].peer]
        if config.smoke:
            names = [n for n in names if n in SMOKE_SCENARIOS.get(phase, names)]
            names = [n for n in names if first or n in SMOKE_OTHER_SHAPES]
        return [s for s in map(SCENARIOS.__getitem__, names) if PHASES[phase].applies(s, shape)]

    # -- what the phases share ----------------------------------------------------

    def tag(self, name: str) -> str:
        """A name unique in this run, for logs, addresses and databases."""
        self._tags += 1
        return f"{name}-{self._tags}"

    def env(self, scenario: Scenario, database_url: str, smtp_port: int) -> dict[str, str]:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "BENCH_SCENARIO": scenario.name,
            "BENCH_CELERY_BROKER": self.config.redis_url,
            "DEBUG": "0",
            "SECRET_KEY": "bench-only-not-secret",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SITE_URL": "http://127.0.0.1",
            "DATABASE_URL": database_url,
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(smtp_port),
            "SIGNUP_RATE_PER_IP": "off",
            "MAIL_RATE_PER_ADDRESS": "off",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }

    def _migrate(self, template: str, database_url: str) -> None:
        scenario = next(s for s in SCENARIOS.values() if s.template == template)
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "--no-input", "-v", "0"],
            cwd=ROOT,
            env=self.env(scenario, database_url, 25),
            check=True,
            timeout=300,
        )

    def flush_broker(self) -> None:
        """Celery: empty the broker's database (the run's own index) of older sessions' tasks."""
        import redis

        redis.Redis.from_url(self.config.redis_url).flushdb()

    def where(self, session: Session) -> dict[str, Any]:
        """The keys every record of a session starts with."""
        return {
            "scenario": session.scenario.name,
            "shape": str(session.shape),
            "smtp_delay": session.smtp_delay,
        }

    def record(self, phase: str, record: dict[str, Any]) -> None:
        self.results[phase].append(record)

    def fail(self, what: str) -> None:
        """What the smoke must not pass: a 5xx, a lost or duplicated mail, a broken scenario."""
        print(f"  FAIL: {what}", flush=True)
        self.results["failures"].append(what)

    def note(self, what: str) -> None:
        """A finding worth reading that is not a failure (mail late behind a slow relay)."""
        print(f"  note: {what}", flush=True)
        self.results["notes"].append(what)

    def check_answers(self, label: str, record: dict[str, Any]) -> None:
        """Fail on a 5xx or a request without answer, and on lost or duplicated mail.

        Mails still owed after the wait count as lost at 0 s SMTP and in the
        smoke; behind a slow relay in a full run they are late (the sessions
        are stopped with the backlog in their queue), which is a note.
        """
        if bad := bad_statuses(record["statuses"]):
            self.fail(f"{label}: errors {bad}")
        mail = record.get("mail")
        if not mail:
            return
        if mail["duplicates"]:
            self.fail(f"{label}: {mail['duplicates']} duplicate mails")
        if mail["undelivered"]:
            what = (
                f"{label}: {mail['undelivered']} of {mail['expected']} mails not delivered "
                f"within {mail['waited_s']} s"
            )
            if self.config.smoke or not record["smtp_delay"]:
                self.fail(what)
            else:
                self.note(what)

    async def guarded(
        self, scenario: Scenario, shape: Shape, step: Callable[[], Awaitable[Any]]
    ) -> None:
        """A scenario that cannot run at all is a finding, not the end of the run."""
        key = f"{scenario.name} {shape}"
        if key in self.broken:
            return
        try:
            await step()
        except Broken as error:
            self.broken[key] = str(error)
            self.fail(f"{key}: {error} (the rest of {key} is skipped)")
        except Exception as error:
            self.fail(f"{key}: {type(error).__name__}: {str(error)[-2000:]}")
