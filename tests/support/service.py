"""The service as users run it: migrated databases and real uvicorn processes."""

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
HEALTHZ_TOKEN = "e2e-operator-token"
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")


def base_env(database_url: str, smtp_port: int, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DEBUG": "0",
        "SECRET_KEY": "e2e-test-secret",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SITE_URL": "http://127.0.0.1",
        "DATABASE_URL": database_url,
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp_port),
        "EMAIL_TIMEOUT": "10",
        "TASKS_POLL_INTERVAL": "0.1",
        "TASKS_LEASE_SECONDS": "3",
        "TASKS_RETRY_BASE_DELAY": "0.2",
        "HEALTHZ_TOKEN": HEALTHZ_TOKEN,
        "SIGNUP_RATE_PER_IP": "off",
        "MAIL_RATE_PER_ADDRESS": "off",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(extra)
    return env


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )


@contextmanager
def sqlite_database(directory: Path) -> Iterator[str]:
    yield f"sqlite:///{directory / 'service.sqlite3'}"


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database on the PostgreSQL server, dropped afterwards.

    With CI=true an unreachable server fails the test: CI must run these.
    """
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL is required on CI but unreachable: {error}")
        pytest.skip(f"no PostgreSQL reachable at {POSTGRES_URL} (set TEST_POSTGRES_URL)")
    name = f"signup_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class ServiceProcess:
    """``uvicorn asgi_project.asgi:application`` in its own process group.

    ``command``, if given, starts the service instead (the Procfile's line,
    ``bin/dev``), and is told its port in ``PORT``.
    """

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        workers: int = 1,
        *,
        command: list[str] | None = None,
    ) -> None:
        self.workers = workers
        self.port = free_port()
        self.env = {**env, "PORT": str(self.port)} if command else env
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.command = command
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> "ServiceProcess":
        command = self.command or [
            sys.executable, "-m", "uvicorn", "asgi_project.asgi:application",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--lifespan", "on", "--workers", str(self.workers),
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return self
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"service did not start; log:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def job_counts(self) -> dict[str, int]:
        """The ledger's job counts by status, as ``/healthz`` tells the operator."""
        headers = {"Authorization": f"Bearer {HEALTHZ_TOKEN}"}
        counts: dict[str, int] = httpx.get(f"{self.url}/healthz", headers=headers).json()["jobs"]
        return counts

    def signup(self, email: str) -> httpx.Response:
        return httpx.post(f"{self.url}/signup/", json={"email": email}, timeout=10)

    def terminate(self, timeout: float = 60.0) -> tuple[int, float]:
        """SIGTERM, as a deploy does; returns (exit code, seconds until exit)."""
        assert self.process is not None
        began = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        return code, time.monotonic() - began

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash or the OOM killer does."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
