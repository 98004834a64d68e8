"""What the service counts, and how a scrape reads it (asgi_project/metrics.py).

The counting itself is tested where it happens (the view, the runner, the
transport); ``tests/e2e/test_metrics.py`` runs the multiprocess mode under
``uvicorn --workers 2``.
"""

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from asgi_project import metrics
from tests.support.metrics import names, parse, value


def sent(outcome: str) -> float:
    return (
        REGISTRY.get_sample_value("mailer_send_duration_seconds_count", {"outcome": outcome}) or 0
    )


def waited() -> tuple[float, float]:
    count = REGISTRY.get_sample_value("mailer_enqueued_to_accepted_seconds_count") or 0
    total = REGISTRY.get_sample_value("mailer_enqueued_to_accepted_seconds_sum") or 0
    return count, total


def test_a_send_is_timed_by_outcome_and_an_accepted_one_from_its_enqueue() -> None:
    accepted, failed, (count, total) = sent("accepted"), sent("failed"), waited()
    with metrics.timed_send(enqueued_at=timezone.now() - timedelta(seconds=90)):
        pass
    with pytest.raises(ConnectionError), metrics.timed_send(enqueued_at=timezone.now()):
        raise ConnectionError
    assert (sent("accepted") - accepted, sent("failed") - failed) == (1, 1)
    # Only the accepted mail reached an inbox: 90 s after its job was enqueued.
    new_count, new_total = waited()
    assert new_count - count == 1
    assert 90 <= new_total - total < 100


def test_a_scrape_without_the_ledger_says_so() -> None:
    body, content_type = metrics.exposition(None, None)
    samples = parse(body.decode())
    assert value(samples, "background_ledger_up") == 0
    assert not {"background_ledger_jobs", "background_ledger_oldest_ready_job_age_seconds"} & names(
        samples
    )
    # The process's own metrics are still there.
    assert "signup_request_duration_seconds_count" in names(samples)
    assert content_type.startswith("text/plain")


def test_a_process_forgets_the_live_gauges_of_processes_that_ended(tmp_path: Path) -> None:
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                           capture_output=True, check=True)  # fmt: skip
    gone = int(ended.stdout)
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        files = {
            "gauge_livesum": (gone, running.pid),
            "gauge_liveall": (gone,),
            "counter": (gone, running.pid),
            "histogram": (gone,),
        }
        for kind, pids in files.items():
            for pid in pids:
                (tmp_path / f"{kind}_{pid}.db").touch()
        metrics._prepare(str(tmp_path))
        kept = sorted(path.name for path in tmp_path.iterdir())
    finally:
        running.kill()
        running.wait()
    # Counts of ended processes stay in the totals; their gauges of "now" go.
    assert kept == sorted(
        [
            f"counter_{gone}.db",
            f"counter_{running.pid}.db",
            f"gauge_livesum_{running.pid}.db",
            f"histogram_{gone}.db",
        ]
    )


def test_the_directory_is_created(tmp_path: Path) -> None:
    directory = tmp_path / "new" / "metrics"
    metrics._prepare(str(directory))
    assert directory.is_dir()
