"""/metrics under ``uvicorn --workers 2``: one set, whichever worker answers the scrape."""

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from prometheus_client.multiprocess import MultiProcessCollector

from tests.support.metrics import Samples, parse, value
from tests.support.service import ServiceProcess, base_env, migrate, sqlite_database
from tests.support.smtp_sessions import SessionCountingServer
from tests.support.waiting import wait_until

TOKEN = "e2e-scrape-token"
WELCOME = {"task": "mailer.tasks.send_welcome_email"}


def scrape(service: ServiceProcess) -> Samples:
    # A new connection each time: either worker may take it.
    response = httpx.get(f"{service.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    return parse(response.text)


def signups_by_process(directory: Path) -> dict[int, float]:
    """The signups each process has counted, from its own file in the multiprocess directory."""
    counted: dict[int, float] = {}
    for path in directory.glob("counter_*.db"):
        families = MultiProcessCollector.merge([str(path)])
        samples = [s for m in families if m.name == "signup_requests" for s in m.samples]
        counted[int(path.stem.rpartition("_")[2])] = sum(sample.value for sample in samples)
    return counted


def test_two_workers_report_one_set_of_metrics(tmp_path: Path) -> None:
    smtp = SessionCountingServer().start()
    directory = tmp_path / "metrics"  # Created by the service.
    with sqlite_database(tmp_path) as url:
        env = base_env(url, smtp.port, PROMETHEUS_MULTIPROC_DIR=str(directory), METRICS_TOKEN=TOKEN)
        migrate(env)
        service = ServiceProcess(env, tmp_path / "uvicorn.log", workers=2).start()
        try:
            signed_up = 0
            # Until both workers have answered signups (new connections spread over them).
            with ThreadPoolExecutor(8) as pool:
                deadline = time.monotonic() + 30
                while len([n for n in signups_by_process(directory).values() if n]) < 2:
                    assert time.monotonic() < deadline, "one worker took every signup"
                    emails = [f"worker{signed_up + i}@example.com" for i in range(16)]
                    statuses = list(pool.map(lambda e: service.signup(e).status_code, emails))
                    assert statuses == [201] * 16
                    signed_up += 16
            smtp.wait_for(signed_up)

            def all_counted() -> bool:
                samples = scrape(service)
                return value(samples, "background_jobs_succeeded_total", **WELCOME) == signed_up

            wait_until(all_counted, f"{signed_up} jobs counted as succeeded")
            # Every scrape, whichever worker answers, adds up both workers' counts.
            for samples in [scrape(service) for _ in range(10)]:
                assert value(samples, "signup_requests_total", status="201") == signed_up
                assert value(samples, "signup_request_duration_seconds_count") == signed_up
                for counter in ("enqueued", "started", "succeeded"):
                    assert (
                        value(samples, f"background_jobs_{counter}_total", **WELCOME) == signed_up
                    )
                assert value(samples, "mailer_enqueued_to_accepted_seconds_count") == signed_up
                assert value(samples, "background_ledger_jobs", status="READY") == 0
            assert sum(signups_by_process(directory).values()) == signed_up
            # Connections kept open by both workers' pools: what the SMTP server sees.
            wait_until(
                lambda: (
                    value(scrape(service), "mailer_smtp_connections_open")
                    == smtp.open_sessions()
                    > 0
                ),
                "the open connections gauge matching the server's sessions",
            )

            # A worker that dies is replaced: its counts stay, its open connections go.
            [victim, *_] = [pid for pid, n in signups_by_process(directory).items() if n]
            os.kill(victim, signal.SIGKILL)
            wait_until(
                lambda: smtp.open_sessions() < smtp.sessions_opened,
                "the dead worker's sessions closed",
            )
            wait_until(
                lambda: httpx.get(f"{service.url}/healthz").status_code == 200, "serving again"
            )
            more = [f"after{i}@example.com" for i in range(4)]
            assert [service.signup(e).status_code for e in more] == [201] * 4
            smtp.wait_for(signed_up + 4)
            wait_until(
                lambda: (
                    value(scrape(service), "signup_requests_total", status="201") == signed_up + 4
                ),
                "the dead worker's signups still counted",
            )
            wait_until(
                lambda: (
                    value(scrape(service), "mailer_smtp_connections_open") == smtp.open_sessions()
                ),
                "the dead worker's connections no longer counted",
            )
        finally:
            service.stop()
            smtp.stop()
