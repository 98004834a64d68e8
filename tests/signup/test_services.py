"""The signup transaction (``signup.services.register_address``): all or nothing."""

import asyncio
import sqlite3
import threading
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.db import transaction

from background.database import DatabaseUnavailable, request_threads
from background.models import Job
from mailer import new_accounts
from mailer.tasks import send_welcome_email
from signup.models import User
from signup.services import register_address

pytestmark = pytest.mark.django_db(transaction=True)


async def nothing_written() -> bool:
    return not await User.objects.aexists() and not await Job.objects.aexists()


async def test_a_committed_signup_keeps_the_new_account_for_its_welcome_mail() -> None:
    await request_threads.run(register_address, "new@example.com", "127.0.0.1")
    await request_threads.run(register_address, "new@example.com", "127.0.0.1")  # Exists now.

    kept = new_accounts.take("new@example.com")
    stored = await User.objects.aget(email="new@example.com")
    assert kept is not None and (kept.pk, kept.password) == (stored.pk, stored.password)
    assert new_accounts.take("new@example.com") is None  # The second signup kept nothing.


async def test_a_signup_over_the_mail_limit_keeps_no_account(settings: Any) -> None:
    settings.MAIL_RATE_PER_ADDRESS = "0/h"
    await request_threads.run(register_address, "limited@example.com", "127.0.0.1")

    assert await User.objects.filter(email="limited@example.com").aexists()
    assert not await Job.objects.aexists()
    assert new_accounts.take("limited@example.com") is None


async def test_rolled_back_signup_queues_nothing() -> None:
    class Abort(Exception):
        pass

    def sign_up_then_fail() -> None:
        with transaction.atomic():
            register_address("rollback@example.com", "127.0.0.1")
            raise Abort

    with pytest.raises(Abort):
        await sync_to_async(sign_up_then_fail)()
    assert await nothing_written()
    assert new_accounts.take("rollback@example.com") is None


DUMMY_TASKS = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}


async def test_a_backend_outside_the_database_gets_the_job_after_the_commit(settings: Any) -> None:
    # A broker's worker could run the job before the account is visible, or
    # for an account that was rolled back: such backends are handed the job
    # only once the signup has committed.
    settings.TASKS = DUMMY_TASKS
    backend = send_welcome_email.get_backend()
    seen_inside: list[int] = []

    def sign_up(email: str, fail: bool) -> None:
        with transaction.atomic():
            register_address(email, "127.0.0.1")
            seen_inside.append(len(backend.results))
            if fail:
                raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        await sync_to_async(sign_up)("rolled-back@example.com", True)
    await sync_to_async(sign_up)("committed@example.com", False)

    assert seen_inside == [0, 0]
    assert [result.args for result in backend.results] == [["committed@example.com"]]


@pytest.mark.skipif(
    django_settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3",
    reason="holds SQLite's write lock from another connection",
)
async def test_a_signup_answered_503_commits_nothing_once_the_lock_is_freed(settings: Any) -> None:
    # The call waits for the lock longer than its caller waits for the call
    # (SQLite's busy timeout is the DATABASE_TIMEOUT the connection opened with).
    settings.DATABASE_TIMEOUT = 0.1
    outcome: list[BaseException | None] = []
    finished = threading.Event()

    def sign_up() -> None:
        try:
            register_address("answered-503@example.com", "127.0.0.1")
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)
        finally:
            finished.set()

    locker = sqlite3.connect(django_settings.DATABASES["default"]["NAME"], isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # Another process holds the write lock.
    try:
        with pytest.raises(DatabaseUnavailable):
            await request_threads.run(sign_up)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert await asyncio.to_thread(finished.wait, 10)  # The lock came; the call went on.
    assert len(outcome) == 1 and isinstance(outcome[0], DatabaseUnavailable)
    assert await nothing_written()
