"""The jobs moved to Celery or Django Q2, as the README tells a user to.

Each test runs uvicorn and the other system's real worker (Celery against the
machine's Redis, ``manage.py qcluster`` on the service's database), signs up
through the service, then, from a ``manage.py shell`` beside them, reads the
job's result and signs up twice more: once in a transaction that rolls back,
then once for real. A job queued for the rolled-back signup would have run
before the last one (Celery: one worker process takes its queue in order;
Django Q2: it would still be in the queue table), so when the last one is done,
exactly two jobs must have run.
"""

import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.support.service import (
    HEALTHZ_TOKEN,
    ROOT,
    ServiceProcess,
    base_env,
    migrate,
    postgres_database,
    sqlite_database,
)
from tests.support.smtp_server import Received, SMTPTestServer
from tests.support.waiting import wait_until
from tests.support.workers import WorkerProcess, require_modules

SIGNED_UP = "ada@example.com"
ROLLED_BACK = "rolled-back@example.com"
KEPT = "kept@example.com"

SHELL = """
from django.db import transaction
from mailer.tasks import send_welcome_email
from signup.services import register_address

result = send_welcome_email.get_result({job_id!r})
print(result.status, result.return_value, result.args)

class RolledBack(Exception):
    pass

try:
    with transaction.atomic():
        register_address({rolled_back!r}, "192.0.2.1")
        raise RolledBack
except RolledBack:
    pass
register_address({kept!r}, "192.0.2.1")
"""


def job_id(mail: Received) -> str:
    """The job's id, which the task puts in the Message-ID (``<job id>@<domain>``)."""
    return str(mail.message["Message-ID"]).strip("<>").split("@")[0]


def shell_beside_the_service(env: dict[str, str], signed_up_job: str) -> str:
    """Read the first job's result, then sign up ROLLED_BACK (rolled back) and KEPT."""
    script = SHELL.format(job_id=signed_up_job, rolled_back=ROLLED_BACK, kept=KEPT)
    shell = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", script],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shell.returncode == 0, shell.stderr
    return shell.stdout.strip().splitlines()[-1]


def operator_health(service: ServiceProcess) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {HEALTHZ_TOKEN}"}
    body: dict[str, object] = httpx.get(f"{service.url}/healthz", headers=headers).json()
    return body


def sign_up_and_check_the_first_mail(service: ServiceProcess, smtp: SMTPTestServer) -> str:
    assert service.signup(SIGNED_UP).status_code == 201
    [mail] = smtp.wait_for(1)
    assert mail.recipients == [SIGNED_UP]
    return job_id(mail)


@pytest.fixture
def redis_url() -> str:
    require_modules("requirements-celery.txt", "celery", "django_tasks_celery", "redis")
    import redis

    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.ConnectionError as error:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"Redis is required on CI but unreachable: {error}")
        pytest.skip(f"no Redis reachable at {url} (set TEST_REDIS_URL)")
    return url


def test_celery_mails_a_signup_once_and_never_a_rolled_back_one(
    redis_url: str, smtp: SMTPTestServer, tmp_path: Path
) -> None:
    import redis

    # Its own queue: other test runs and deployments may share this Redis.
    # Its results expire within the hour (TASKS_RESULT_RETENTION).
    queue = f"signup-test-{uuid.uuid4().hex[:12]}"
    with sqlite_database(tmp_path) as database_url:
        env = base_env(
            database_url, smtp.port, TASKS_BACKEND="celery", CELERY_BROKER_URL=redis_url,
            CELERY_TASK_DEFAULT_QUEUE=queue, TASKS_RESULT_RETENTION="1h",
        )  # fmt: skip
        migrate(env)
        # The README's worker command; one process, so it takes the queue in order.
        command = [sys.executable, "-m", "celery", "-A", "asgi_project.celery", "worker"]
        command += ["--loglevel", "INFO", "--concurrency", "1", "--hostname", f"{queue}@%h"]
        worker = WorkerProcess(command, env, tmp_path / "celery.log")
        service = ServiceProcess(env, tmp_path / "uvicorn.log")
        try:
            worker.start(ready="ready.")
            service.start()
            first = sign_up_and_check_the_first_mail(service, smtp)

            result = shell_beside_the_service(env, first)
            assert result == f"SUCCESSFUL True ['{SIGNED_UP}']"
            kept = job_id(smtp.wait_for(2)[1])
            done = f"Task mailer.tasks.send_welcome_email[{kept}] succeeded"
            wait_until(lambda: done in worker.log(), "the last job logged")

            assert smtp.recipients() == [SIGNED_UP, KEPT]
            log = worker.log()
            assert log.count(" succeeded in ") == 2, log
            assert f"Task mailer.tasks.send_welcome_email[{first}] succeeded" in log
            assert "@example.com" not in log + service.log()  # Per-task lines, no addresses.
            assert operator_health(service) == {"database": "ok", "task_backend": "CeleryBackend"}
        finally:
            service.stop()
            worker.stop()
            broker = redis.Redis.from_url(redis_url)
            broker.delete(queue, f"_kombu.binding.{queue}")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The service's database, which Django Q2's queue shares."""
    database = sqlite_database(tmp_path) if request.param == "sqlite" else postgres_database()
    with database as url:
        yield url


def rows(database_url: str, query: str) -> list[tuple[object, ...]]:
    if database_url.startswith("sqlite:///"):
        with closing(sqlite3.connect(database_url.removeprefix("sqlite:///"))) as sqlite:
            return sqlite.execute(query).fetchall()
    with psycopg.connect(database_url) as postgres:
        return postgres.execute(query).fetchall()


def test_django_q2_mails_a_signup_once_and_never_a_rolled_back_one(
    database_url: str, smtp: SMTPTestServer, tmp_path: Path
) -> None:
    require_modules("requirements-django-q2.txt", "django_q")
    env = base_env(database_url, smtp.port, TASKS_BACKEND="django-q2")
    migrate(env)
    worker = WorkerProcess(
        [sys.executable, "manage.py", "qcluster"], env, tmp_path / "qcluster.log"
    )
    service = ServiceProcess(env, tmp_path / "uvicorn.log")
    try:
        worker.start(ready="running.")
        service.start()
        first = sign_up_and_check_the_first_mail(service, smtp)

        result = shell_beside_the_service(env, first)
        assert result == f"SUCCESSFUL True ['{SIGNED_UP}']"
        kept = job_id(smtp.wait_for(2)[1])
        processed = "Processed 'background.django_q2.run_task' (mailer.tasks.send_welcome_email)"

        def queue_done() -> bool:
            queued = rows(database_url, "SELECT COUNT(*) FROM django_q_ormq")
            return queued == [(0,)] and worker.log().count(processed) >= 2

        wait_until(queue_done, "Django Q2's queue empty and its jobs logged")
        ran = rows(database_url, "SELECT id, success FROM django_q_task")
        assert sorted(ran) == sorted([(first, True), (kept, True)])
        assert smtp.recipients() == [SIGNED_UP, KEPT]
        log = worker.log()
        assert log.count(processed) == 2, log
        assert "@example.com" not in log + service.log()  # Per-task lines, without addresses.
        assert operator_health(service) == {"database": "ok", "task_backend": "DjangoQ2Backend"}
    finally:
        service.stop()
        worker.stop()
