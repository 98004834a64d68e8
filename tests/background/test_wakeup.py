"""The cross-process wake-up (background/wakeup.py, ledger.announce_due_jobs).

The listener against a real PostgreSQL server, directly and through the fault
proxy: a notification wakes it, a killed, refused or stalled connection is
replaced with one log line each way. What the ledger announces, from another
process (``manage.py shell``): due jobs once per transaction, nothing for a
rollback or a deferred job. On SQLite: no listener, no NOTIFY.
"""

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from background import wakeup
from background.ledger import JOBS_CHANNEL
from mailer.tasks import send_welcome_email
from tests.support.fault_proxy import FaultProxy
from tests.support.log_records import log_records
from tests.support.service import ROOT, base_env, migrate, postgres_database

LISTENER_NAME = "job wake-up"
LOST = "Not listening for jobs queued by other processes"
BACK = "Listening for jobs queued by other processes again"


class Wakes:
    """Counts the listener's calls; lets a test wait for the next one."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = asyncio.Event()

    def __call__(self) -> None:
        self.count += 1
        self._changed.set()

    async def after(self, count: int, timeout: float = 10.0) -> None:
        """Wait until there were more than ``count`` calls."""
        async with asyncio.timeout(timeout):
            while self.count <= count:
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@asynccontextmanager
async def listening(url: str) -> AsyncIterator[tuple[Wakes, list[Any]]]:
    """A started listener on ``url``, its wakes, and the log records of the block."""
    wakes = Wakes()
    params = {"conninfo": url, "connect_timeout": 2, "application_name": LISTENER_NAME}
    listener = wakeup.WakeupListener(params, wakes)
    with log_records("background.wakeup") as records:
        listener.start()
        try:
            await wakes.after(0)  # Listening: it wakes the runner once to catch up.
            yield wakes, records
        finally:
            await listener.stop()


async def notify(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as sender:
        await sender.execute(f"NOTIFY {JOBS_CHANNEL}")


def lines(records: list[Any], text: str) -> int:
    return sum(text in record.getMessage() for record in records)


@pytest.mark.postgres
async def test_a_notification_wakes_the_runner_again_after_the_connection_is_killed(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wakeup, "RECONNECT_BASE_DELAY", 0.02)  # Not 0.25-0.5 s.
    database = httpx.URL(postgres_url).path.lstrip("/")
    async with listening(postgres_url) as (wakes, records):
        await notify(postgres_url)
        await wakes.after(1)

        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
            cursor = await admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = %s AND application_name = %s",
                [database, LISTENER_NAME],
            )
            assert await cursor.fetchone() == (1,)
        # Back: it listens again and catches up with one wake of its own.
        count = wakes.count
        await wakes.after(count)
        await notify(postgres_url)
        await wakes.after(count + 1)

    assert lines(records, LOST) == 1
    assert lines(records, BACK) == 1


@pytest.mark.postgres
@pytest.mark.e2e  # Seconds of reconnect backoff: outside the quick inner loop.
@pytest.mark.parametrize("fault", ["refuse", "stall"])
async def test_an_unreachable_server_is_logged_once_and_retried_until_back(
    postgres_url: str, fault: str, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    # A stalled connection is found by the periodic check, not by an error.
    monkeypatch.setattr(wakeup, "CHECK_CONNECTION_EVERY", 0.2)
    settings.DATABASE_TIMEOUT = 1
    url = httpx.URL(postgres_url)
    proxy = FaultProxy(url.host, url.port or 5432).start()
    try:
        async with listening(str(url.copy_with(port=proxy.port))) as (wakes, records):
            getattr(proxy, fault)()
            async with asyncio.timeout(10):
                while not lines(records, LOST):
                    await asyncio.sleep(0.05)
            # Several reconnects fail meanwhile (backoff from 0.25 s).
            await asyncio.sleep(3)
            count = wakes.count
            proxy.restore()
            await wakes.after(count)
            await notify(postgres_url)
            await wakes.after(count + 1)
    finally:
        proxy.stop()
    assert lines(records, LOST) == 1
    assert lines(records, BACK) == 1


SHELL_SCRIPT = """
from datetime import timedelta
from django.db import connection, transaction
from django.utils import timezone
from mailer.tasks import send_welcome_email

def sentinel(name):
    with connection.cursor() as cursor:
        cursor.execute("NOTIFY {channel}, %s", [name])

with transaction.atomic():
    send_welcome_email.enqueue("rolled-back@example.com")
    transaction.set_rollback(True)
sentinel("after rollback")
with transaction.atomic():
    for i in range(3):
        send_welcome_email.enqueue(f"burst{{i}}@example.com")
sentinel("after burst")
send_welcome_email.using(run_after=timezone.now() + timedelta(hours=1)).enqueue("later@example.com")
sentinel("after deferred")
send_welcome_email.enqueue("autocommit@example.com")
sentinel("end")
"""


@pytest.mark.postgres
@pytest.mark.e2e  # Starts manage.py processes.
async def test_another_process_announces_due_jobs_once_per_transaction_and_only_on_commit(
    postgres_url: str, tmp_path: Path
) -> None:
    env = base_env(postgres_url, smtp_port=1)
    migrate(env)
    payloads: list[str] = []
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as listener:
        await listener.execute(f"LISTEN {JOBS_CHANNEL}")
        shell = await asyncio.create_subprocess_exec(
            sys.executable, "manage.py", "shell", "-c",
            SHELL_SCRIPT.format(channel=JOBS_CHANNEL), cwd=ROOT, env=env,
        )  # fmt: skip
        assert await asyncio.wait_for(shell.wait(), timeout=60) == 0
        async for notification in listener.notifies(timeout=10):
            payloads.append(notification.payload)
            if notification.payload == "end":
                break
    # "" is the ledger's announcement: none for the rollback, one for the
    # burst of three, none for the deferred job, one in autocommit.
    assert payloads == ["after rollback", "", "after burst", "after deferred", "", "end"]


@pytest.mark.django_db(transaction=True)
def test_on_sqlite_there_is_no_listener_and_no_notify() -> None:
    assert connection.vendor == "sqlite"
    assert wakeup.listener_for(lambda: None) is None
    with CaptureQueriesContext(connection) as queries:
        send_welcome_email.enqueue("sqlite@example.com")
    assert queries.captured_queries
    assert not [query for query in queries.captured_queries if "NOTIFY" in query["sql"]]
