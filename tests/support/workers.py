"""Another system's job worker beside the service: ``celery worker``, ``manage.py qcluster``.

Their packages are optional (``requirements-celery.txt``,
``requirements-django-q2.txt``): without them the tests that need one skip,
except with CI=true, where they fail, because CI must run them.
"""

import importlib.util
import os
import signal
import subprocess
from contextlib import suppress
from pathlib import Path
from typing import Self

import pytest

from tests.support.service import ROOT
from tests.support.waiting import wait_until


def require_modules(requirements: str, *modules: str) -> None:
    """Skip the test (fail it on CI) unless ``modules`` are installed."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if not missing:
        return
    reason = f"{', '.join(missing)} not installed (pip install -r {requirements})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"required on CI: {reason}")
    pytest.skip(reason)


class WorkerProcess:
    """A worker command run from the project root in its own process group."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.command = command
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, ready: str, timeout: float = 60.0) -> Self:
        """Start it and return once its log shows ``ready``."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        process = self.process

        def started() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"worker exited; log:\n{self.log()}")
            return ready in self.log()

        wait_until(started, f"{ready!r} in the worker's log", timeout)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the worker's main process, as a platform stops it; SIGKILL if it hangs.

        Not to its whole process group: Django Q2 1.11.1's cluster can hang
        for good when its processes all get the signal at once (django-q2
        issue #346, seen here with ``timeout``'s group signal).
        """
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        # Whatever is left of it (a hung cluster, orphaned children).
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
