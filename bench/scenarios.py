"""What the benchmark runs: scenarios (which view, which TASKS backend, which worker) and
shapes (which database, how many uvicorn workers).

Plain data, imported by ``bench/settings.py`` too, so a scenario's Django
settings and its harness description are one row of ``SCENARIOS``.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DUMMY_TASKS = {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}


@dataclass(frozen=True, kw_only=True)
class Scenario:
    name: str
    what: str  # one line for the report and the README
    path: str = "/signup/"  # where the signups are posted
    tasks: Mapping[str, Any] | None = None  # TASKS["default"]; None: the product's own
    apps: tuple[str, ...] = ()  # INSTALLED_APPS the backend adds (their own database template)
    settings: Mapping[str, Any] = field(default_factory=dict)  # other Django settings it sets
    worker: str | None = None  # a process beside uvicorn: "db_worker" or "celery"
    sends_mail: bool = True
    queues: bool = True  # the mail goes through TASKS: it has a drain rate
    searched: bool = True  # gets a sustained rate, the headline figure
    every_shape: bool = True  # runs on every shape; else on the run's first shape only
    peer: bool = False  # one of the alternatives the project is compared with

    @property
    def template(self) -> str:
        """Scenarios with the same INSTALLED_APPS share a migrated database template."""
        return self.name if self.apps else "base"


SCENARIOS = {
    scenario.name: scenario
    for scenario in (
        Scenario(
            name="floor",
            what="the product's `/signup/` with `TASKS` = Django's `DummyBackend`: the same "
            "view, validation and pooled database threads, the same transaction and "
            "on-commit hand-over, but no job row, no runner and no mail",
            tasks=DUMMY_TASKS,
            sends_mail=False,
            queues=False,
        ),
        Scenario(
            name="floor-hello",
            what="an async view that answers 201 and does nothing (the framework's floor)",
            path="/bench/floor-hello/",
            sends_mail=False,
            queues=False,
            searched=False,
            every_shape=False,
        ),
        Scenario(
            name="extra-thread-insert",
            what="validates and creates the user on Django's thread-per-request path "
            "(`sync_to_async`, a new connection per request), which the product avoids; "
            "an extra row, not a floor",
            path="/bench/thread-insert/",
            sends_mail=False,
            queues=False,
            searched=False,
            every_shape=False,
        ),
        Scenario(
            name="inline",
            what="as `extra-thread-insert`, then renders the welcome mail and awaits the "
            "product's SMTP transport inside the request",
            path="/bench/inline/",
            queues=False,
            searched=False,
            every_shape=False,
        ),
        Scenario(
            name="project",
            what="the product as shipped: its ledger backend and the runner in the web process",
        ),
        Scenario(
            name="tasks-db",
            what="`TASKS` = `django_tasks_db.DatabaseBackend`, `manage.py db_worker` with its "
            "defaults (one task at a time, 1 s idle poll)",
            tasks={"BACKEND": "django_tasks_db.DatabaseBackend"},
            apps=("django_tasks_db",),
            worker="db_worker",
            peer=True,
        ),
        Scenario(
            name="celery",
            what="`TASKS` = `django_tasks_celery.CeleryBackend` (app in `bench/celery_app.py`, "
            "Redis broker, no result backend), a `celery worker` with 16 threads",
            tasks={
                "BACKEND": "django_tasks_celery.CeleryBackend",
                "OPTIONS": {"CELERY_APP": "bench.celery_app.app"},
            },
            worker="celery",
            peer=True,
        ),
        Scenario(
            name="vtasks",
            what="`TASKS` = `django_vtasks.backends.db.DatabaseTaskBackend`, its worker "
            "embedded in the ASGI app (`bench/vtasks_shim.py` supplies the task context)",
            tasks={"BACKEND": "django_vtasks.backends.db.DatabaseTaskBackend"},
            apps=("django_vtasks", "django_vtasks.db"),
            settings={"VTASKS_RUN_SCHEDULER": False},
            peer=True,
        ),
    )
}
PEERS = tuple(name for name, scenario in SCENARIOS.items() if scenario.peer)


@dataclass(frozen=True)
class Shape:
    """How the service is deployed: its database and ``uvicorn --workers``."""

    database: str  # "sqlite" or "postgres"
    workers: int

    DATABASES = ("sqlite", "postgres")

    def __str__(self) -> str:
        return f"{self.database}-w{self.workers}"

    @classmethod
    def parse(cls, text: str) -> "Shape":
        """``sqlite-w1``, ``postgres-w2``, ..."""
        database, _, workers = text.rpartition("-w")
        if database not in cls.DATABASES or not workers.isdigit() or int(workers) < 1:
            raise ValueError(f"{text!r}: expected <{'|'.join(cls.DATABASES)}>-w<workers>")
        return cls(database, int(workers))
