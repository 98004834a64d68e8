"""The figures one run is made of: which shapes, scenarios and phases, and how long each lasts."""

from dataclasses import dataclass
from pathlib import Path

from .scenarios import Shape
from .search import SearchPlan

# The smoke checks that every phase and scenario still works, in about two
# minutes, not the figures: the sustained search and the closed loop run for a
# few scenarios only, and the shapes after the first run the product alone.
SMOKE_SCENARIOS = {"sustained": ("floor", "project"), "maximum": ("floor",)}
SMOKE_OTHER_SHAPES = ("project",)


@dataclass(frozen=True, kw_only=True)
class Config:
    smoke: bool
    out: Path
    shapes: list[Shape]
    scenarios: list[str]
    peer_shapes: list[str] | None  # where the peers run (None: every shape they apply to)
    phases: list[str]
    postgres_url: str  # a server where this user may create databases
    # Every session.
    mail_wait: float  # s to wait for a load's mails once it ends
    request_timeout: float
    warmup: int  # requests per session before any measurement, mails waited for
    # sustained: the search, each step an open loop of step_seconds.
    step_seconds: float
    search: SearchPlan
    slow_step_retries: int  # a step failed on time alone is tried again this often
    # latency: open loop at fractions of the project's sustained rate (or base_rate).
    fractions: list[float]
    delays: list[float]  # SMTP delays, s
    seconds: float  # per rate
    base_rate: float | None
    # maximum: closed loop.
    closed_seconds: float
    connections: int
    wrk: bool  # also probe with wrk (C), which needs far less CPU than the Python client
    # drain: a backlog queued with nothing running, then everything started.
    drain_count: int
    drain_timeout: float
    drain_sinks: list[str]  # "bench" (the harness's sink) and/or "smtp-sink" (postfix's)
    relay_delay: float  # the slow relay's s per mail
    relay_count: int  # mails drained into the slow relay
    # recovery: signups at half the project's sustained rate while a backlog drains.
    recovery_backlog: int
    # memory: the product's RSS with a small and a large backlog.
    memory_backlogs: list[int]
    memory_watch: float
    # pickup: jobs queued by another process, PostgreSQL.
    pickup_jobs: int
    pickup_gap: float
    # Peers.
    celery_pool: str
    celery_concurrency: int
    redis_url: str
