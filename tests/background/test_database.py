"""The database threads: where calls run, how outages surface, how connections are replaced."""

import asyncio
import sqlite3
import threading
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection

from background.database import (
    DatabaseUnavailable,
    first_line,
    request_threads,
    runner_threads,
    task_threads,
)
from signup.models import User

pytestmark = pytest.mark.django_db(transaction=True)


def raw_connection() -> object:
    """The thread's driver-level connection (held by the caller, so its id is not reused)."""
    connection.ensure_connection()
    return connection.connection


async def test_calls_run_on_the_pools_own_threads() -> None:
    names = {await request_threads.run(lambda: threading.current_thread().name) for _ in range(8)}
    assert names and all(name.startswith("db-request") for name in names)
    assert await runner_threads.run(lambda: threading.current_thread().name) == "db-runner_0"


async def test_a_thread_keeps_its_connection_between_calls() -> None:
    first = await runner_threads.run(raw_connection)
    assert await runner_threads.run(raw_connection) is first


async def test_after_a_failed_call_the_thread_opens_a_fresh_connection() -> None:
    before = await runner_threads.run(raw_connection)

    def fail() -> None:
        User.objects.exists()
        raise RuntimeError("a bug, or a connection in an unknown state")

    with pytest.raises(RuntimeError):
        await runner_threads.run(fail)
    assert await runner_threads.run(raw_connection) is not before


async def test_a_locked_database_is_unavailable_within_the_timeout(settings: Any) -> None:
    database = django_settings.DATABASES["default"]["NAME"]
    locker = sqlite3.connect(database, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # Another process holds the write lock.
    settings.DATABASE_TIMEOUT = 0.1
    ended = threading.Event()

    def create_locked() -> None:
        try:
            User.objects.create_user("locked@example.com")
        finally:
            ended.set()

    try:
        with pytest.raises(DatabaseUnavailable, match=r"no answer within 0\.1 s"):
            await request_threads.run(create_locked)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    # The call its caller gave up on goes on once the lock is free: let it end
    # here, not write its row after this test's flush, into the next test.
    assert await asyncio.to_thread(ended.wait, 10)
    # Once the lock is gone the same call works (on another thread, or the same
    # once its lock wait ended).
    await request_threads.run(User.objects.create_user, "unlocked@example.com")
    assert await User.objects.filter(email="unlocked@example.com").aexists()


async def test_on_sqlite_the_writing_pools_take_turns_and_the_reading_pool_does_not(
    settings: Any,
) -> None:
    # SQLite's busy handler sleeps between tries and lets newcomers win; in
    # one process the writers queue on a lock instead.
    assert connection.vendor == "sqlite"
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        holding.set()
        release.wait(timeout=10)

    held = asyncio.ensure_future(runner_threads.run(hold))
    try:
        assert await asyncio.to_thread(holding.wait, 10)
        assert await task_threads.run(lambda: "read beside it") == "read beside it"
        queued = asyncio.ensure_future(request_threads.run(lambda: "written after it"))
        await asyncio.sleep(0.2)
        assert not queued.done()
        release.set()
        assert await queued == "written after it"

        # A writer that waits longer than DATABASE_TIMEOUT gets the usual answer.
        settings.DATABASE_TIMEOUT = 0.1
        await held
        holding.clear()
        release.clear()
        held = asyncio.ensure_future(runner_threads.run(hold))
        assert await asyncio.to_thread(holding.wait, 10)
        with pytest.raises(DatabaseUnavailable):
            await request_threads.run(lambda: "never")
    finally:
        release.set()
        await asyncio.gather(held, return_exceptions=True)  # Its caller gave up at 0.1 s.


def test_first_line_is_one_line_without_the_traceback() -> None:
    error = ValueError("first line\nsecond line")
    assert first_line(error) == "ValueError: first line"
    assert first_line(KeyError()) == "KeyError"
