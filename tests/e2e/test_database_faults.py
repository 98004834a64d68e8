"""Database faults under a steady stream of signups, through real uvicorn processes.

PostgreSQL sits behind a fault-injecting TCP proxy the test drives (drop every
connection, refuse new ones, stop answering); SQLite is locked by another
process's transaction. Through every fault: no 500, no request hanging, 503
while the database is away, ``/healthz`` non-200 while down and 200 after,
and every signup answered 201 is mailed exactly once after recovery.
"""

import contextlib
import itertools
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest

from background.database import CHECK_AFTER_IDLE_SECONDS
from tests.support.fault_proxy import FaultProxy
from tests.support.service import ServiceProcess, base_env, migrate, postgres_database
from tests.support.smtp_server import SMTPTestServer

# Short, so the tests are quick: the service gives the database this long.
DATABASE_TIMEOUT = 2.0
# A request may take the database timeout plus this before it counts as hung.
HANG_MARGIN = 3.0
SIGNUPS_PER_SECOND = 20


@dataclass
class Answer:
    email: str
    started: float  # time.monotonic()
    seconds: float
    status: int  # 0: no answer (timeout or connection error)


@dataclass
class SignupStream:
    """Signs up a new address every 1/SIGNUPS_PER_SECOND s, open loop: a slow answer
    does not delay the next request. Records every answer."""

    service: ServiceProcess
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> "SignupStream":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=30)

    def _run(self) -> None:
        limit = DATABASE_TIMEOUT + HANG_MARGIN
        # Enough threads for every request of a hang to be in flight at once.
        workers = int(SIGNUPS_PER_SECOND * limit) + 1
        with (
            httpx.Client(timeout=limit, limits=httpx.Limits(max_connections=workers)) as client,
            ThreadPoolExecutor(workers) as pool,
        ):
            for i in itertools.count():
                if self._stop.wait(1 / SIGNUPS_PER_SECOND):
                    break
                pool.submit(self._sign_up, client, f"stream{i}@example.com")

    def _sign_up(self, client: httpx.Client, email: str) -> None:
        started = time.monotonic()
        try:
            status = client.post(f"{self.service.url}/signup/", json={"email": email}).status_code
        except httpx.HTTPError:
            status = 0
        self.answers.append(Answer(email, started, time.monotonic() - started, status))

    def statuses(self) -> Counter[int]:
        return Counter(answer.status for answer in self.answers)

    def registered(self) -> set[str]:
        return {answer.email for answer in self.answers if answer.status == 201}


def post_form(service: ServiceProcess, email: str) -> httpx.Response:
    """Sign up as a browser does: get the form (and its CSRF cookie), then post it."""
    with httpx.Client(base_url=service.url, timeout=DATABASE_TIMEOUT + HANG_MARGIN) as browser:
        token = browser.get("/signup/").cookies["csrftoken"]
        return browser.post(
            "/signup/",
            data={"email": email, "csrfmiddlewaretoken": token},
            headers={"Referer": f"{service.url}/signup/"},
        )


def health(service: ServiceProcess) -> int:
    try:
        return httpx.get(
            f"{service.url}/healthz", timeout=DATABASE_TIMEOUT + HANG_MARGIN
        ).status_code
    except httpx.HTTPError:
        return 0


def wait_for_health(service: ServiceProcess, wanted: int, timeout: float = 20.0) -> float:
    """Poll /healthz until it answers ``wanted``; the seconds that took."""
    began = time.monotonic()
    while (status := health(service)) != wanted:
        assert time.monotonic() - began < timeout, f"/healthz stayed {status}, not {wanted}"
        time.sleep(0.1)
    return time.monotonic() - began


def wait_until_settled(service: ServiceProcess, timeout: float = 30.0) -> dict[str, int]:
    """Job counts once nothing is READY or RUNNING any more."""
    deadline = time.monotonic() + timeout
    while True:
        counts = service.job_counts()
        if counts["READY"] == counts["RUNNING"] == 0 or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def assert_every_registration_mailed_once(
    stream: SignupStream, smtp: SMTPTestServer, service: ServiceProcess
) -> None:
    registered = stream.registered()
    smtp.wait_for(len(registered), timeout=30)
    counts = wait_until_settled(service)
    assert counts["RUNNING"] == counts["READY"] == counts["FAILED"] == 0, counts
    received = Counter(smtp.recipients())
    assert registered <= set(received), registered - set(received)
    # A 503 answered after the database timeout may still have committed
    # (documented); anything else mailed must have been asked for.
    assert set(received) <= {answer.email for answer in stream.answers}
    assert max(received.values()) == 1, "a mail was sent twice"


def assert_no_error_and_no_hang(stream: SignupStream) -> None:
    statuses = stream.statuses()
    assert set(statuses) <= {201, 503}, statuses
    slowest = max(answer.seconds for answer in stream.answers)
    assert slowest < DATABASE_TIMEOUT + HANG_MARGIN, f"a signup took {slowest:.1f} s"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@pytest.fixture
def proxied_service(
    postgres_url: str, smtp: SMTPTestServer, tmp_path: Path
) -> Iterator[tuple[ServiceProcess, FaultProxy]]:
    """The service on PostgreSQL, every connection through a fault proxy."""
    url = httpx.URL(postgres_url)
    proxy = FaultProxy(url.host, url.port or 5432).start()
    proxied_url = str(url.copy_with(port=proxy.port))
    env = base_env(proxied_url, smtp.port, DATABASE_TIMEOUT=str(DATABASE_TIMEOUT))
    migrate(env)
    service = ServiceProcess(env, tmp_path / "uvicorn.log").start()
    yield service, proxy
    service.stop()
    proxy.stop()


@pytest.mark.postgres
@pytest.mark.parametrize("fault", ["refuse", "stall"])
def test_postgres_outage_answers_503_then_delivers_everything(
    proxied_service: tuple[ServiceProcess, FaultProxy], smtp: SMTPTestServer, fault: str
) -> None:
    service, proxy = proxied_service
    with SignupStream(service) as stream:
        time.sleep(1.5)
        getattr(proxy, fault)()
        down_at = time.monotonic()
        seconds_to_unhealthy = wait_for_health(service, 503)
        time.sleep(max(0.0, 5.0 - (time.monotonic() - down_at)))
        proxy.restore()
        restored_at = time.monotonic()
        seconds_to_healthy = wait_for_health(service, 200)
        time.sleep(3)

    assert_no_error_and_no_hang(stream)
    # A request still waiting for its database thread when the database comes
    # back may yet succeed: only those that gave up before then must be 503.
    gave_up_before = restored_at - DATABASE_TIMEOUT - 0.5
    during = [a.status for a in stream.answers if down_at + 0.5 < a.started < gave_up_before]
    assert during and set(during) == {503}, Counter(during)
    # Within a few seconds of the database's return every signup succeeds again.
    after = [a.status for a in stream.answers if a.started > restored_at + DATABASE_TIMEOUT + 1]
    assert after and set(after) == {201}, Counter(after)
    assert_every_registration_mailed_once(stream, smtp, service)

    mailed_after = sorted(m.arrived_at - restored_at for m in smtp.received)
    mailed_after = [seconds for seconds in mailed_after if seconds > 0]
    print(  # The figures behind the outage scenario, for `-s` runs.
        f"\n[{fault}] answers {dict(stream.statuses())}, mails {len(smtp.received)}; "
        f"/healthz 503 after {seconds_to_unhealthy:.1f} s, 200 {seconds_to_healthy:.1f} s "
        f"after restore; {len(mailed_after)} mails after restore, the first "
        f"{mailed_after[0]:.2f} s and the last {mailed_after[-1]:.2f} s after it"
    )


@pytest.mark.postgres
def test_killed_backends_are_replaced_every_time(
    proxied_service: tuple[ServiceProcess, FaultProxy], postgres_url: str, smtp: SMTPTestServer
) -> None:
    service, _ = proxied_service
    database = httpx.URL(postgres_url).path.lstrip("/")
    statuses: Counter[int] = Counter()
    for round_ in range(5):
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                [database],
            ).fetchone()
        assert killed is not None and killed[0] >= 1
        # A connection idle for a while is checked before use: the first
        # signups after the kill reconnect instead of failing.
        time.sleep(CHECK_AFTER_IDLE_SECONDS + 0.5)
        emails = [f"kill{round_}-{i}@example.com" for i in range(3)]
        statuses.update(service.signup(email).status_code for email in emails)
        # Delivery resumes: this round's mails arrive before the next kill.
        smtp.wait_for(statuses[201], timeout=20)
    assert statuses == {201: 15}, statuses
    assert health(service) == 200
    counts = wait_until_settled(service)
    assert counts["RUNNING"] == counts["READY"] == 0, counts
    assert max(Counter(smtp.recipients()).values()) == 1


@pytest.fixture
def sqlite_service(smtp: SMTPTestServer, tmp_path: Path) -> Iterator[tuple[ServiceProcess, Path]]:
    """The service on a SQLite file of its own; the file's path, for another process to lock."""
    path = tmp_path / "service.sqlite3"
    env = base_env(f"sqlite:///{path}", smtp.port, DATABASE_TIMEOUT=str(DATABASE_TIMEOUT))
    migrate(env)
    service = ServiceProcess(env, tmp_path / "uvicorn.log").start()
    yield service, path
    service.stop()


def test_locked_sqlite_answers_503_then_delivers_everything(
    sqlite_service: tuple[ServiceProcess, Path], smtp: SMTPTestServer
) -> None:
    service, path = sqlite_service
    with SignupStream(service) as stream:
        time.sleep(1.5)
        # Another process takes the write lock and keeps it.
        locker = sqlite3.connect(path, isolation_level=None, timeout=10)
        locker.execute("BEGIN IMMEDIATE")
        locked_at = time.monotonic()
        wait_for_health(service, 503)  # The runner cannot claim: it is stalled.
        form_answer = post_form(service, "form-during-lock@example.com")
        time.sleep(max(0.0, 5.0 - (time.monotonic() - locked_at)))
        locker.execute("ROLLBACK")
        locker.close()
        released_at = time.monotonic()
        wait_for_health(service, 200)
        time.sleep(3)

    assert_no_error_and_no_hang(stream)
    late = [a for a in stream.answers if locked_at + DATABASE_TIMEOUT < a.started]
    during = [a.status for a in late if a.started < released_at - DATABASE_TIMEOUT]
    assert during and set(during) == {503}, Counter(during)
    after = [a.status for a in stream.answers if a.started > released_at + 1]
    assert after and set(after) == {201}, Counter(after)
    assert_every_registration_mailed_once(stream, smtp, service)
    # A browser gets the page, with the same advice.
    assert form_answer.status_code == 503
    assert form_answer.headers["Content-Type"].startswith("text/html")
    assert form_answer.headers["Retry-After"] == "5"
    # One warning per interval, not one per failed request.
    warnings = service.log().count("Signups answer 503: database unavailable")
    assert 1 <= warnings < stream.statuses()[503] / 5
    assert "Service Unavailable: /signup/" not in service.log()


def test_healthz_reports_a_runner_that_cannot_reach_its_ledger(
    sqlite_service: tuple[ServiceProcess, Path],
) -> None:
    service, path = sqlite_service
    # In WAL mode readers go on beside a writer: /healthz can read, but
    # the runner cannot claim while another process holds the write lock.
    locker = sqlite3.connect(path, isolation_level=None, timeout=10)
    locker.execute("BEGIN IMMEDIATE")
    # The first 503 may say the database is unavailable instead: a read that
    # waited behind this process's claim, itself waiting for the write lock
    # (one SQLite lock per process, background/database.py). What must come
    # is an answer that tells the stalled runner from the readable database.
    answers = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        answers.append(httpx.get(f"{service.url}/healthz").json())
        if answers[-1] == {"database": "ok", "runner": "stalled"}:
            break
        time.sleep(0.1)
    locker.execute("ROLLBACK")
    locker.close()
    wait_for_health(service, 200)
    assert answers[-1] == {"database": "ok", "runner": "stalled"}, answers[-5:]
    assert "Job sweep recovered" in service.log()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB filesystem (tmpfs) the test can fill; skipped where mounting is not allowed.

    Room for SQLite's write-ahead log, which grows to ~4 MB before it is checkpointed.
    """
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_disk_answers_503_then_delivers_everything(
    small_disk: Path, smtp: SMTPTestServer, tmp_path: Path
) -> None:
    env = base_env(f"sqlite:///{small_disk / 'service.sqlite3'}", smtp.port)
    migrate(env)
    service = ServiceProcess(env, tmp_path / "uvicorn.log").start()
    filler = small_disk / "filler"
    try:
        with SignupStream(service) as stream:
            time.sleep(1.5)
            # Fill every byte left, as a runaway log file would.
            with filler.open("wb") as sink, contextlib.suppress(OSError):
                while True:
                    sink.write(b"\0" * 65536)
                    sink.flush()
            full_at = time.monotonic()
            time.sleep(3)
            filler.unlink()
            freed_at = time.monotonic()
            time.sleep(3)

        assert_no_error_and_no_hang(stream)
        during = [a.status for a in stream.answers if full_at + 0.5 < a.started < freed_at - 0.5]
        assert during and 503 in during, Counter(during)
        after = [a.status for a in stream.answers if a.started > freed_at + 1]
        assert after and set(after) == {201}, Counter(after)
        assert_every_registration_mailed_once(stream, smtp, service)
    finally:
        service.stop()
