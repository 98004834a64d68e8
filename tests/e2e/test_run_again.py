"""Run again from another process (PostgreSQL): its NOTIFY wakes the service's runner at once.

The admin that runs a job again may be served by another worker than the
one whose runner picks the job up. Here a ``manage.py shell`` makes the
refused mail's job due (``ledger.run_again_now``, as the admin's action
does) while the service polls only every 30 s: the mail arriving within
seconds proves the wake-up carried it.
"""

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.service import ROOT, ServiceProcess, base_env, migrate, postgres_database
from tests.support.smtp_server import SMTPTestServer

ADDRESS = "ada@example.com"
REFUSAL = "550 5.1.1 <{address}>: mailbox unavailable"
RUN_AGAIN = (
    "from background import ledger; from background.models import Job; "
    "print(ledger.run_again_now(Job.objects.filter(status='FAILED')))"
)


@pytest.fixture
def service(tmp_path: Path, smtp: SMTPTestServer) -> Iterator[ServiceProcess]:
    with postgres_database() as database_url:
        env = base_env(database_url, smtp.port, TASKS_POLL_INTERVAL="30")
        migrate(env)
        process = ServiceProcess(env, tmp_path / "uvicorn.log").start()
        yield process
        process.stop()


@pytest.mark.postgres
def test_a_job_run_again_from_another_process_is_sent_before_the_next_poll(
    service: ServiceProcess, smtp: SMTPTestServer
) -> None:
    smtp.refuse_recipients(REFUSAL)  # The relay refuses the address once, for good (5xx).
    assert service.signup(ADDRESS).status_code == 201
    deadline = time.monotonic() + 10
    while service.job_counts()["FAILED"] != 1:
        assert time.monotonic() < deadline, "the refused mail's job did not fail"
        time.sleep(0.1)

    shell = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", RUN_AGAIN],
        cwd=ROOT, env=service.env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert shell.stdout.strip() == "1"
    (mail,) = smtp.wait_for(1, timeout=10)
    assert mail.recipients == [ADDRESS]
