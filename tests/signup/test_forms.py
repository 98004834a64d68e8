"""Who gets a password-reset mail: the account the canonical mailbox names, within the limit."""

import sqlite3
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client

from background.models import Job
from signup.forms import PasswordResetForm
from signup.models import User
from tests.conftest import mailers_for
from tests.support.ports import free_port

pytestmark = pytest.mark.django_db

PASSWORD = "a-Long-unusual-passphrase-42"


def recipients(email: str) -> list[str]:
    return [user.email for user in PasswordResetForm().get_users(email)]


def test_the_account_of_the_canonical_mailbox_gets_the_mail() -> None:
    User.objects.create_user("ada@office.example", PASSWORD)
    assert recipients('"ADA"@O\ufb03ce.Example.') == ["ada@office.example"]


@pytest.mark.parametrize(
    "account",
    [
        pytest.param({"password": None}, id="never-chose-a-password"),
        pytest.param({"password": PASSWORD, "is_active": False}, id="inactive"),
    ],
)
def test_an_account_that_may_not_reset_gets_nothing(account: dict[str, Any]) -> None:
    User.objects.create_user("ada@example.com", **account)
    assert recipients("ada@example.com") == []


@pytest.mark.parametrize("email", ["nobody@example.com", "ada@[127.0.0.1]", "ada@localhost"])
def test_an_address_without_an_account_or_undeliverable_gets_nothing(email: str) -> None:
    User.objects.create_user("ada@example.com", PASSWORD)
    assert recipients(email) == []


@pytest.mark.usefixtures("fresh_rate_window")
def test_reset_mails_count_against_the_per_address_mail_limit(settings: Any) -> None:
    settings.MAIL_RATE_PER_ADDRESS = "2/h"
    User.objects.create_user("ada@example.com", PASSWORD)
    sent = [
        recipients(spelling)
        for spelling in ["ada@example.com", "ADA@example.com", "ada@EXAMPLE.com"]
    ]
    assert sent == [["ada@example.com"], ["ada@example.com"], []]


@pytest.mark.skipif(
    django_settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3",
    reason="holds SQLite's write lock from another connection",
)
@pytest.mark.django_db(transaction=True)
def test_a_reset_mail_that_cannot_be_queued_answers_503_and_a_retry_queues_it(
    client: Client, settings: Any
) -> None:
    # Django's own form logs a failed send and still says "check your inbox":
    # with the outbox that was a mail never queued, and a page that said otherwise.
    settings.MAILERS = mailers_for(free_port())  # The outbox, as settings.py has it.
    User.objects.create_user("ada@example.com", PASSWORD)
    connection.ensure_connection()
    connection.connection.execute("PRAGMA busy_timeout = 50")  # The test's, not the service's 5 s.
    locker = sqlite3.connect(django_settings.DATABASES["default"]["NAME"], isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # Another process holds the write lock.
    try:
        during = client.post("/password-reset/", {"email": "ada@example.com"})
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert (during.status_code, during["Retry-After"]) == (503, "5")
    assert b"try again shortly" in during.content
    assert "database is locked" not in during.content.decode()  # No internals to the client.
    assert not Job.objects.exists()

    after = client.post("/password-reset/", {"email": "ada@example.com"})
    assert (after.status_code, after["Location"]) == (302, "/password-reset/done/")
    assert list(Job.objects.values_list("task_path", flat=True)) == [
        "mailer.tasks.send_stored_message"
    ]
