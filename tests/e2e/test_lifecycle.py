"""End to end: uvicorn processes, a real SMTP server, SQLite and PostgreSQL."""

import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest

from tests.support.service import (
    ROOT,
    ServiceProcess,
    base_env,
    migrate,
    postgres_database,
    sqlite_database,
)
from tests.support.smtp_server import SMTPTestServer
from tests.support.waiting import clear_of_a_rate_window_edge, wait_until

DATABASES: dict[str, Callable[[Path], AbstractContextManager[str]]] = {
    "sqlite": sqlite_database,
    "postgres": lambda _: postgres_database(),
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with DATABASES[request.param](tmp_path) as url:
        yield url


@pytest.fixture
def launch(
    database_url: str, smtp: SMTPTestServer, tmp_path: Path
) -> Iterator[Callable[..., ServiceProcess]]:
    services: list[ServiceProcess] = []
    migrated = False

    def launch(workers: int = 1, **env: str) -> ServiceProcess:
        nonlocal migrated
        full_env = base_env(database_url, smtp.port, **env)
        if not migrated:
            migrate(full_env)
            migrated = True
        service = ServiceProcess(full_env, tmp_path / f"uvicorn-{len(services)}.log", workers)
        services.append(service)
        return service.start()

    yield launch
    for service in services:
        service.stop()


def sign_up_all(service: ServiceProcess, emails: list[str]) -> list[int]:
    with ThreadPoolExecutor(8) as pool:
        return [response.status_code for response in pool.map(service.signup, emails)]


def all_sent(service: ServiceProcess, count: int, timeout: float = 20.0) -> dict[str, int]:
    """Wait until the ledger says all ``count`` jobs are SUCCESSFUL and nothing is left to run.

    Then no duplicate can still come: a job is sent again only while it is not finished.
    """
    done = {"READY": 0, "RUNNING": 0, "FAILED": 0, "SUCCESSFUL": count}
    deadline = time.monotonic() + timeout
    counts = service.job_counts()
    while counts != done and time.monotonic() < deadline:
        time.sleep(0.1)
        counts = service.job_counts()
    return counts


def test_signups_become_mails(launch: Callable[..., ServiceProcess], smtp: SMTPTestServer) -> None:
    service = launch()
    emails = [f"user{i}@example.com" for i in range(20)]
    assert sign_up_all(service, emails) == [201] * 20
    smtp.wait_for(20)
    assert sorted(smtp.recipients()) == sorted(emails)
    assert len(set(smtp.message_ids())) == 20
    assert all_sent(service, 20) == {"READY": 0, "RUNNING": 0, "FAILED": 0, "SUCCESSFUL": 20}
    assert httpx.get(f"{service.url}/healthz").json() == {"database": "ok", "runner": "ok"}


def test_sigterm_drains_within_the_deadline_and_restart_sends_the_rest_once(
    launch: Callable[..., ServiceProcess], smtp: SMTPTestServer
) -> None:
    smtp.delay = 4.0  # Longer than the drain deadline: some sends must be cut off.
    service = launch(TASKS_DRAIN_TIMEOUT="1", TASKS_CONCURRENCY="4")
    emails = [f"deploy{i}@example.com" for i in range(12)]
    assert sign_up_all(service, emails) == [201] * 12
    wait_until(lambda: smtp.data_commands == 4, "4 sends (TASKS_CONCURRENCY) at the SMTP server")

    code, seconds = service.terminate()
    # uvicorn shuts down cleanly, then re-raises the signal it caught.
    assert code in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in service.log()
    assert seconds < 1 + 5, f"took {seconds:.1f}s to exit"
    assert "left for the next start" in service.log()
    assert smtp.received == []  # Every send was still waiting at the server.

    smtp.delay = 0
    restarted = launch()
    assert all_sent(restarted, 12)["SUCCESSFUL"] == 12
    assert Counter(smtp.recipients()) == Counter(emails)


def test_sigkill_loses_no_mail(launch: Callable[..., ServiceProcess], smtp: SMTPTestServer) -> None:
    smtp.delay = 0.5
    service = launch(TASKS_CONCURRENCY="2")
    emails = [f"crash{i}@example.com" for i in range(10)]
    assert sign_up_all(service, emails) == [201] * 10
    smtp.wait_for(1)  # Some mails are out, the others still at the server or in the ledger.
    service.kill()
    sent_before_crash = len(smtp.received)
    assert sent_before_crash < 10

    smtp.delay = 0
    launch()  # Picks the orphaned jobs up once their 3 s leases run out.
    # Resending after a crash is allowed (at least once): count addresses, not mails.
    smtp.wait_for_recipients(set(emails), timeout=30)
    assert set(smtp.recipients()) == set(emails)


def test_two_workers_send_every_mail_exactly_once(
    launch: Callable[..., ServiceProcess], smtp: SMTPTestServer
) -> None:
    service = launch(workers=2)
    emails = [f"pair{i}@example.com" for i in range(40)]
    assert sign_up_all(service, emails) == [201] * 40  # No "database is locked".
    assert all_sent(service, 40)["SUCCESSFUL"] == 40
    assert Counter(smtp.recipients()) == Counter(emails)


def test_rate_limits_hold_across_two_workers(
    launch: Callable[..., ServiceProcess], smtp: SMTPTestServer
) -> None:
    service = launch(workers=2, SIGNUP_RATE_PER_IP="6/m", MAIL_RATE_PER_ADDRESS="2/h")
    clear_of_a_rate_window_edge()
    # Separate connections spread the requests over both workers.
    statuses = [service.signup("same@example.com").status_code for _ in range(4)]
    assert statuses == [201] * 4  # The answer never reveals the mail limit.
    others = [service.signup(f"other{i}@example.com") for i in range(4)]
    assert [r.status_code for r in others] == [201, 201, 429, 429]
    assert 1 <= int(others[-1].headers["Retry-After"]) <= 60
    assert all_sent(service, 4)["SUCCESSFUL"] == 4
    assert Counter(smtp.recipients()) == {
        "same@example.com": 2,
        "other0@example.com": 1,
        "other1@example.com": 1,
    }


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_startup_fails_without_a_usable_ledger(
    database_url: str, smtp: SMTPTestServer, tmp_path: Path
) -> None:
    service = ServiceProcess(base_env(database_url, smtp.port), tmp_path / "failed.log")
    service.start()  # Not migrated: the runner cannot read its ledger.
    assert service.process is not None
    assert service.process.wait(timeout=30) != 0
    # The cause, and its fix, is in the last lines an operator reads.
    last_lines = "\n".join(service.log().splitlines()[-3:])
    assert "Job runner failed to start" in last_lines
    assert "not applied" in last_lines and "manage.py migrate" in last_lines


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_run_jobs_command_sends_what_sync_code_queued(
    database_url: str, smtp: SMTPTestServer, tmp_path: Path
) -> None:
    env = base_env(database_url, smtp.port)
    migrate(env)
    queue_from_sync_code = (
        "from signup.models import User; from mailer.tasks import send_welcome_email\n"
        "for i in range(3):\n"
        "    User.objects.create_user(f'cli{i}@example.com')\n"
        "    send_welcome_email.enqueue(f'cli{i}@example.com')\n"
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", queue_from_sync_code],
        cwd=ROOT, env=env, check=True, timeout=60,
    )  # fmt: skip
    assert smtp.received == []  # Queued in the ledger only.

    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "run_jobs"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            smtp.wait_for(3)
        finally:
            worker.send_signal(signal.SIGTERM)
            code = worker.wait(timeout=30)
    assert code == 0
    assert sorted(smtp.recipients()) == [f"cli{i}@example.com" for i in range(3)]
    # SIGTERM may come between a 250 and its ledger write: those finish in the drain.
    assert re.search(
        r"Stopped: \d finished while draining, 0 left\.", (tmp_path / "worker.log").read_text()
    )
    database = sqlite3.connect(database_url.removeprefix("sqlite:///"))
    statuses = database.execute("SELECT status FROM background_job").fetchall()
    database.close()
    assert statuses == [("SUCCESSFUL",)] * 3
