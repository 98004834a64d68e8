"""bin/dev as a new user runs it: its ports, its inbox, the links in its mails, its log."""

import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from pathlib import Path

import httpx

from tests.support.ports import free_port
from tests.support.service import ROOT, ServiceProcess

# Set for the test run by tests/environment.py; bin/dev chooses its own.
TEST_RUN_SETTINGS = ("DJANGO_SETTINGS_MODULE", "DEBUG", "SECRET_KEY", "SITE_URL", "ALLOWED_HOSTS")


def dev_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in TEST_RUN_SETTINGS}
    return {**env, "DATABASE_URL": f"sqlite:///{tmp_path / 'dev.sqlite3'}", **extra}


@contextmanager
def taken_port() -> Iterator[int]:
    """A port something else listens on, as a first bin/dev's would be."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def run_dev(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bin/dev"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_a_taken_port_is_named_with_a_free_one_to_use(tmp_path: Path) -> None:
    with taken_port() as port:
        result = run_dev(dev_env(tmp_path, PORT=str(port), EMAIL_PORT=str(free_port())))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"bin/dev: port {port} (PORT) is already in use, perhaps by another bin/dev."
    assert re.fullmatch(r"Run this one on free ports: PORT=\d+ bin/dev", lines[1]), lines
    assert not (tmp_path / "dev.sqlite3").exists()  # Stopped before anything started.


def test_both_taken_ports_are_named(tmp_path: Path) -> None:
    with taken_port() as port, taken_port() as email_port:
        result = run_dev(dev_env(tmp_path, PORT=str(port), EMAIL_PORT=str(email_port)))
        suggested = re.findall(r"(?:EMAIL_)?PORT=(\d+)", result.stderr)
        assert result.returncode == 1
        assert f"port {port} (PORT) is already in use" in result.stderr
        assert f"port {email_port} (EMAIL_PORT) is already in use" in result.stderr
        assert len(suggested) == 2 and len(set(suggested)) == 2
        for free in suggested:  # The suggestion works.
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", int(free)))


def test_it_serves_and_mails_links_to_its_own_port_and_logs_warnings_once(
    tmp_path: Path,
) -> None:
    env = dev_env(tmp_path, EMAIL_PORT=str(free_port()))
    dev = ServiceProcess(env, tmp_path / "dev.log", command=["bin/dev"]).start()
    saved: list[Path] = []
    try:
        assert dev.signup("new-user@example.com").status_code == 201, dev.log()
        deadline = time.monotonic() + 30
        while not (found := re.search(r"Saved: (\S+)", dev.log())):
            assert time.monotonic() < deadline, dev.log()
            time.sleep(0.05)
        saved.append(Path(found[1]))
        link = f"Link: http://127.0.0.1:{dev.port}/account/set-password/"
        assert link in dev.log()
        assert saved[0].parent == ROOT / "var" / "inbox"
        mail = message_from_bytes(saved[0].read_bytes(), policy=policy.default)
        body = mail.get_body(("plain",))
        assert body is not None
        assert f"http://127.0.0.1:{dev.port}/account/set-password/" in body.get_content()

        # A warning (a Host the service refuses), printed once.
        refused = httpx.get(f"{dev.url}/signup/", headers={"Host": "elsewhere.example"})
        assert refused.status_code == 400
        deadline = time.monotonic() + 10
        while "elsewhere.example" not in dev.log():
            assert time.monotonic() < deadline, dev.log()
            time.sleep(0.05)
        httpx.get(f"{dev.url}/healthz")  # Logged after the warning: the log is complete.
        deadline = time.monotonic() + 10
        while dev.log().count("GET /healthz") < 2:
            assert time.monotonic() < deadline, dev.log()
            time.sleep(0.05)
        warnings = [line for line in dev.log().splitlines() if "elsewhere.example" in line]
        assert len(warnings) == 1, warnings
        assert " WARNING django.security.DisallowedHost: " in warnings[0]
    finally:
        dev.stop()
        for path in saved:  # The developer's inbox keeps only their own mails.
            path.unlink(missing_ok=True)
