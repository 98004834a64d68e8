"""What the service counts for Prometheus, and how ``/metrics`` adds it up across processes.

The counters and histograms are updated where things happen: the signup view,
the job runner, the mail task and the SMTP transport, each with a line or two.
The ledger's depth is not kept here: it is read from the database when
``/metrics`` is scraped (``background/views.py``), so it is right whichever
process answers.

With ``PROMETHEUS_MULTIPROC_DIR`` set, prometheus_client keeps each process's
values in files in that directory and a scrape, answered by any worker, adds
up all of them: ``uvicorn --workers N`` reports one set. Without it the
values live in this process's memory, which is right for a single process.
Files of processes that have ended are kept, so totals never go backwards
when one worker restarts (Prometheus would take that for a counter reset);
only the "live" gauges of ended processes are dropped, when a process starts.
"""

import glob
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING

from django.utils import timezone
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Metric
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

if TYPE_CHECKING:
    from background.ledger import Backlog

# Read by prometheus_client itself, from the environment, when it is imported.
MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # Someone else's process: running.
    return True


def _prepare(directory: str) -> None:
    """Create the directory; drop the live gauges of processes that are no longer running.

    Before this process creates a metric: its own files are then new, or
    (the process id reused, after a container restart) those of a process
    that is gone.
    """
    os.makedirs(directory, exist_ok=True)
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        pid = path.removesuffix(".db").rpartition("_")[2]
        if pid.isdigit() and not _is_running(int(pid)):
            mark_process_dead(int(pid), directory)


if MULTIPROCESS_DIR:
    _prepare(MULTIPROCESS_DIR)

# -- signups (signup/views.py) ------------------------------------------------

SIGNUPS = Counter("signup_requests", "POST /signup/ answers, by HTTP status.", ["status"])
# A signup answers in ~6 ms (p50) and ~30 ms (p99) at half the service's
# capacity (README, Benchmark); a 503 after DATABASE_TIMEOUT takes 5 s.
SIGNUP_SECONDS = Histogram(
    "signup_request_duration_seconds",
    "Time the signup view takes to answer POST /signup/ (parse, validate, the transaction).",
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10),
)

# -- jobs (background/backend.py, background/runner.py) -----------------------

JOBS_ENQUEUED = Counter("background_jobs_enqueued", "Jobs committed to the ledger.", ["task"])
JOBS_STARTED = Counter(
    "background_jobs_started", "Attempts started (a retried job starts again).", ["task"]
)
JOBS_SUCCEEDED = Counter("background_jobs_succeeded", "Jobs that succeeded.", ["task"])
JOBS_RETRIED = Counter(
    "background_jobs_retried", "Attempts that failed and were scheduled to run again.", ["task"]
)
JOBS_FAILED = Counter(
    "background_jobs_failed",
    "Jobs that failed for good (a permanent error, or their attempts used up).",
    ["task"],
)
_SWEEPS = Counter(
    "background_runner_sweeps",
    "Sweeps of the ledger by the job runners, by outcome (failed: database unavailable).",
    ["outcome"],
)
SWEEPS_OK = _SWEEPS.labels(outcome="ok")
SWEEPS_FAILED = _SWEEPS.labels(outcome="failed")
# Below TASKS_CONCURRENCY while requests wait on a loop busy with quick jobs
# (background/pacing.py); set as it changes, added up over live processes.
JOBS_WORK_LIMIT = Gauge(
    "background_jobs_work_limit",
    "Jobs that may be in their task at once now, all processes.",
    multiprocess_mode="livesum",
)

# -- mail (mailer/tasks.py, mailer/transport.py) ------------------------------

# Seconds to minutes while the relay answers; up to TASKS_RETRY_MAX_DELAY (an
# hour) and beyond while a mail is retried.
MAIL_QUEUED_TO_ACCEPTED = Histogram(
    "mailer_enqueued_to_accepted_seconds",
    "From the mail's job being enqueued (the signup's commit) to the SMTP server's 250.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400),
)
# Milliseconds to a local relay, seconds to a slow one; a send gives up after
# 3 x EMAIL_TIMEOUT (30 s).
_SEND_SECONDS = Histogram(
    "mailer_send_duration_seconds",
    "Time a send takes, waiting for a pooled connection included, by outcome.",
    ["outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
_SENT_SECONDS = _SEND_SECONDS.labels(outcome="accepted")
_SEND_FAILED_SECONDS = _SEND_SECONDS.labels(outcome="failed")
# Each process's own count, set as it changes; the scrape adds up the
# processes still running ("livesum").
SMTP_CONNECTIONS_OPEN = Gauge(
    "mailer_smtp_connections_open",
    "SMTP connections open, idle in the pool or sending.",
    multiprocess_mode="livesum",
)
SMTP_CONNECTIONS_OPEN.set(0)  # Not a value left by an ended process with this id.


@contextmanager
def timed_send(enqueued_at: datetime | None) -> Iterator[None]:
    """Time the SMTP send in the block; on the server's 250, the time since ``enqueued_at`` too."""
    started = time.perf_counter()
    try:
        yield
    except Exception:
        _SEND_FAILED_SECONDS.observe(time.perf_counter() - started)
        raise
    _SENT_SECONDS.observe(time.perf_counter() - started)
    if enqueued_at is not None:
        MAIL_QUEUED_TO_ACCEPTED.observe((timezone.now() - enqueued_at).total_seconds())


# -- the scrape ----------------------------------------------------------------


def _ledger_families(backlog: "Backlog | None") -> Iterator[Metric]:
    up = GaugeMetricFamily(
        "background_ledger_up", "1 if this scrape could read the job ledger, else 0."
    )
    up.add_metric([], 0 if backlog is None else 1)
    yield up
    if backlog is None:
        return
    depth = GaugeMetricFamily(
        "background_ledger_jobs",
        "Jobs in the ledger by status, read at scrape time "
        "(SUCCESSFUL ones are not counted: see background_jobs_succeeded_total).",
        labels=["status"],
    )
    for status, count in backlog.jobs.items():
        depth.add_metric([status], count)
    yield depth
    oldest = GaugeMetricFamily(
        "background_ledger_oldest_ready_job_age_seconds",
        "How long the READY job due longest has been due (0: none is due).",
    )
    oldest.add_metric([], backlog.oldest_due_seconds)
    yield oldest


class _Scrape:
    """What one scrape reports: this process's (or every process's) metrics and the ledger's."""

    def __init__(self, backlog: "Backlog | None") -> None:
        self._backlog = backlog

    def collect(self) -> Iterable[Metric]:
        if MULTIPROCESS_DIR:
            yield from MultiProcessCollector(None, MULTIPROCESS_DIR).collect()
        else:
            yield from REGISTRY.collect()
        yield from _ledger_families(self._backlog)


def exposition(backlog: "Backlog | None", accept: str | None) -> tuple[bytes, str]:
    """The scrape's body and content type (Prometheus text, or OpenMetrics if asked for)."""
    encode, content_type = choose_encoder(accept or "")
    return encode(_Scrape(backlog)), content_type  # type: ignore[arg-type]
