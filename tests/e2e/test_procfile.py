"""The Procfile's lines as a platform runs them: ``sh -c`` in the checkout, nothing activated."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.service import ROOT, ServiceProcess, base_env
from tests.support.smtp_server import SMTPTestServer

VENV_BIN = str(ROOT / ".venv" / "bin")


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def shell_env(env: dict[str, str], *, activated: bool) -> dict[str, str]:
    """``env`` as a shell sees it: with .venv activated, or with no virtualenv at all."""
    path = [entry for entry in env["PATH"].split(os.pathsep) if entry != VENV_BIN]
    env = {name: value for name, value in env.items() if name != "VIRTUAL_ENV"}
    if activated:
        path.insert(0, VENV_BIN)
        env["VIRTUAL_ENV"] = str(ROOT / ".venv")
    return {**env, "PATH": os.pathsep.join(path)}


@pytest.mark.parametrize("activated", [False, True], ids=["no-virtualenv", "activated"])
def test_release_then_web_serve_signups(
    activated: bool, smtp: SMTPTestServer, tmp_path: Path
) -> None:
    lines = procfile()
    database_url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    env = shell_env(base_env(database_url, smtp.port), activated=activated)
    release = subprocess.run(
        ["sh", "-c", lines["release"]], cwd=ROOT, env=env, capture_output=True, timeout=120
    )
    assert release.returncode == 0, release.stderr.decode()
    web = ServiceProcess(env, tmp_path / "web.log", command=["sh", "-c", lines["web"]]).start()
    try:
        assert web.signup("procfile@example.com").status_code == 201, web.log()
        smtp.wait_for(1)
        assert smtp.recipients() == ["procfile@example.com"]
        # A platform stops a dyno or container with SIGTERM to all of its
        # processes (the shell that ran the line among them): uvicorn drains.
        assert web.process is not None
        os.killpg(web.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while "Finished server process" not in web.log():
            assert time.monotonic() < deadline, web.log()
            time.sleep(0.05)
        assert "0 left for the next start" in web.log()
    finally:
        web.stop()
