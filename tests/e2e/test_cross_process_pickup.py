"""Jobs queued by another process, picked up by a running service.

The other process is ``manage.py shell`` signing up addresses with the
service's own transaction (``register_address``), as sync code, a cron job or
another host would. The service polls only every 60 s: on PostgreSQL a mail
within a few seconds proves the wake-up, with no tight timing to assert; on
SQLite the poll picks the job up as before.
"""

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from background.ledger import JOBS_CHANNEL
from tests.support.service import ROOT, ServiceProcess, base_env, migrate, postgres_database
from tests.support.smtp_server import SMTPTestServer

pytestmark = pytest.mark.e2e

LONG_POLL = "60"
# Far below the poll: a mail this soon was woken up, not polled.
PICKUP_DEADLINE = 5.0
LISTENER_NAME = "job wake-up"
LOST = "Not listening for jobs queued by other processes"
BACK = "Listening for jobs queued by other processes again"

ENQUEUE = """
from signup.services import register_address
for email in {emails!r}:
    register_address(email, "192.0.2.1")
"""


def sign_up_elsewhere(env: dict[str, str], emails: list[str]) -> None:
    """Sign the addresses up from another process, each in its own transaction."""
    script = ENQUEUE.format(emails=emails)
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT, env=env, check=True, timeout=60,
    )  # fmt: skip


def listener_pid(postgres_url: str, other_than: int | None = None, timeout: float = 20.0) -> int:
    """The service's wake-up connection's backend, once it is there (a new one if asked)."""
    database = httpx.URL(postgres_url).path.lstrip("/")
    deadline = time.monotonic() + timeout
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        while True:
            rows = admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
                [database, LISTENER_NAME],
            ).fetchall()
            pids = [pid for (pid,) in rows if pid != other_than]
            if pids:
                assert len(pids) == 1, pids
                return pids[0]
            assert time.monotonic() < deadline, "the service is not listening"
            time.sleep(0.05)


@pytest.fixture
def postgres_service(smtp: SMTPTestServer, tmp_path: Path) -> Iterator[tuple[ServiceProcess, str]]:
    with postgres_database() as url:
        env = base_env(url, smtp.port, TASKS_POLL_INTERVAL=LONG_POLL)
        migrate(env)
        service = ServiceProcess(env, tmp_path / "uvicorn.log").start()
        try:
            yield service, url
        finally:
            service.stop()


@pytest.mark.postgres
def test_a_job_queued_by_another_process_is_mailed_at_once_also_after_the_listener_is_killed(
    postgres_service: tuple[ServiceProcess, str], smtp: SMTPTestServer
) -> None:
    service, url = postgres_service
    first = listener_pid(url)
    sign_up_elsewhere(service.env, [f"elsewhere{i}@example.com" for i in range(3)])
    smtp.wait_for(3, timeout=PICKUP_DEADLINE)

    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [first])
    listener_pid(url, other_than=first)
    sign_up_elsewhere(service.env, [f"after-kill{i}@example.com" for i in range(3)])
    smtp.wait_for(6, timeout=PICKUP_DEADLINE)

    assert sorted(smtp.recipients()) == sorted(
        [f"elsewhere{i}@example.com" for i in range(3)]
        + [f"after-kill{i}@example.com" for i in range(3)]
    )
    log = service.log()
    assert (log.count(LOST), log.count(BACK)) == (1, 1), log


@pytest.mark.postgres
def test_a_job_handed_over_in_memory_is_not_announced(
    postgres_service: tuple[ServiceProcess, str], smtp: SMTPTestServer
) -> None:
    service, url = postgres_service
    payloads = []
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute(f"LISTEN {JOBS_CHANNEL}")
        assert service.signup("in-memory@example.com").status_code == 201
        smtp.wait_for(1, timeout=PICKUP_DEADLINE)
        # Notifications arrive in commit order: the signup's, if any, first.
        listener.execute(f"NOTIFY {JOBS_CHANNEL}, 'end'")
        for notification in listener.notifies(timeout=10):
            payloads.append(notification.payload)
            if notification.payload == "end":
                break
    assert payloads == ["end"]


def test_on_sqlite_a_job_queued_by_another_process_waits_for_the_poll(
    smtp: SMTPTestServer, tmp_path: Path
) -> None:
    env = base_env(f"sqlite:///{tmp_path / 'service.sqlite3'}", smtp.port, TASKS_POLL_INTERVAL="1")
    migrate(env)
    service = ServiceProcess(env, tmp_path / "uvicorn.log").start()
    try:
        sign_up_elsewhere(env, ["sqlite-elsewhere@example.com"])
        smtp.wait_for(1, timeout=PICKUP_DEADLINE)
    finally:
        service.stop()
    assert smtp.recipients() == ["sqlite-elsewhere@example.com"]
    assert LOST not in service.log()
