"""LOG_FORMAT=json in a real uvicorn process: one object per line, the job on every job
line, and no address anywhere without DEBUG."""

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from tests.support.service import ServiceProcess, base_env, migrate, sqlite_database
from tests.support.smtp_server import SMTPTestServer


def jobs_by_address(database: Path) -> dict[str, tuple[str, str]]:
    """Each job's (id, status), by the address its mail is for."""
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT args, id, status FROM background_job").fetchall()
    return {json.loads(args)[0]: (job_id, status) for args, job_id, status in rows}


def wait_for_statuses(database: Path, wanted: dict[str, str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = jobs_by_address(database)
        if {address: status for address, (_, status) in jobs.items()} == wanted:
            return
        time.sleep(0.1)
    raise AssertionError(f"jobs not {wanted} within {timeout}s: {jobs_by_address(database)}")


def test_json_lines_name_the_job_and_never_the_address(
    smtp: SMTPTestServer, tmp_path: Path
) -> None:
    retried, refused = "retried.person@example.com", "refused.person@example.com"
    with sqlite_database(tmp_path) as url:
        database = Path(url.removeprefix("sqlite:///"))
        env = base_env(url, smtp.port, LOG_FORMAT="json")
        migrate(env)
        service = ServiceProcess(env, tmp_path / "uvicorn.log").start()
        try:
            # Servers quote the recipient when they refuse it: a retry, then a bounce.
            smtp.refuse_recipients("450 4.2.1 <{address}>: mailbox busy, try later")
            assert service.signup(retried).status_code == 201
            smtp.wait_for(1)
            smtp.refuse_recipients("550 5.1.1 <{address}>: no such user")
            assert service.signup(refused).status_code == 201
            wait_for_statuses(database, {retried: "SUCCESSFUL", refused: "FAILED"})
        finally:
            service.terminate()
        jobs = jobs_by_address(database)

    text = service.log()
    lines: list[dict[str, Any]] = [json.loads(line) for line in text.splitlines() if line]
    loggers = {line["logger"] for line in lines}
    assert {"uvicorn.error", "uvicorn.access", "background.runner", "django.tasks"} <= loggers

    job_lines = [line for line in lines if "job_id" in line]
    welcome = "mailer.tasks.send_welcome_email"
    assert [
        (line["logger"], line["job_id"], line["task"], line["attempt"]) for line in job_lines
    ] == [
        ("background.runner", jobs[retried][0], welcome, 1),
        ("background.runner", jobs[refused][0], welcome, 1),
        ("django.tasks", jobs[refused][0], welcome, 1),
    ]
    assert job_lines[0]["reason"] == (
        "DeliveryError: recipients refused (450 4.2.1 <[address]>: mailbox busy, try later)"
    )
    assert job_lines[1]["reason"] == (
        "DeliveryError: recipients refused (550 5.1.1 <[address]>: no such user)"
    )
    assert "<[address]>: no such user" in job_lines[2]["exc_info"]  # Django's traceback.
    for private in (retried, refused, "retried.person", "refused.person"):
        assert private not in text
