"""The mail tasks through the runner: canonical envelope, undeliverable addresses fail once."""

from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.tokens import default_token_generator
from django.core import mail
from django.tasks import TaskResult, TaskResultStatus
from django.utils.http import urlsafe_base64_decode

from background.database import request_threads
from background.models import Job
from background.runner import JobRunner
from mailer import new_accounts
from mailer.outbox import stored_message
from mailer.tasks import send_stored_message, send_welcome_email
from signup.models import User
from signup.services import register_address
from tests.conftest import mailers_for
from tests.support import jobs
from tests.support.log_records import log_records
from tests.support.smtp_server import SMTPTestServer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def plain_server(settings: Any) -> Iterator[SMTPTestServer]:
    """A server that does not offer SMTPUTF8."""
    server = SMTPTestServer(smtputf8=False).start()
    settings.MAILERS = mailers_for(server.port)  # See tests/conftest.py.
    yield server
    server.stop()


async def finished(result: TaskResult) -> TaskResult:
    await jobs.finished(result, timeout=10)
    return result


async def welcome(stored_email: str) -> TaskResult:
    """Queue the welcome mail for an account stored as ``stored_email`` (old rows too)."""
    await sync_to_async(User.objects.create_user)(stored_email)
    return await send_welcome_email.aenqueue(stored_email)


async def test_an_account_stored_in_an_old_spelling_is_mailed_at_its_canonical_mailbox(
    smtp_server: SMTPTestServer, runner: JobRunner
) -> None:
    result = await finished(await welcome('"ada"@o\ufb03ce.example.'))
    assert result.status == TaskResultStatus.SUCCESSFUL
    (mail,) = smtp_server.received
    assert mail.recipients == ["ada@office.example"]
    assert mail.message["To"] == "ada@office.example"


@pytest.mark.parametrize("stored_email", ["user@[127.0.0.1]", "a" * 65 + "@example.com"])
async def test_an_undeliverable_stored_address_fails_after_one_attempt(
    smtp_server: SMTPTestServer, runner: JobRunner, stored_email: str
) -> None:
    result = await finished(await welcome(stored_email))
    assert (result.status, result.attempts) == (TaskResultStatus.FAILED, 1)
    assert "UndeliverableAddress" in result.errors[0].exception_class_path
    assert smtp_server.data_commands == 0


async def test_a_non_ascii_mailbox_without_server_smtputf8_fails_after_one_attempt(
    settings: Any, plain_server: SMTPTestServer, runner: JobRunner
) -> None:
    settings.EMAIL_SMTPUTF8 = True
    result = await finished(await welcome("josé@example.com"))
    assert (result.status, result.attempts) == (TaskResultStatus.FAILED, 1)
    assert "SMTPUTF8 not offered" in result.errors[0].traceback
    assert plain_server.data_commands == 0


async def test_a_non_ascii_mailbox_arrives_with_smtputf8(
    settings: Any, smtp_server: SMTPTestServer, runner: JobRunner
) -> None:
    settings.EMAIL_SMTPUTF8 = True
    result = await finished(await welcome("josé@bücher.example"))
    assert result.status == TaskResultStatus.SUCCESSFUL
    (mail,) = smtp_server.received
    assert mail.recipients == ["josé@xn--bcher-kva.example"]
    assert mail.message["To"] == "josé@xn--bcher-kva.example"


async def test_a_non_ascii_mailbox_fails_once_smtputf8_is_turned_off(
    settings: Any, smtp_server: SMTPTestServer, runner: JobRunner
) -> None:
    settings.EMAIL_SMTPUTF8 = False  # Accepted while it was on; queued, then turned off.
    result = await finished(await welcome("josé@example.com"))
    assert (result.status, result.attempts) == (TaskResultStatus.FAILED, 1)
    assert smtp_server.data_commands == 0


async def stored(*recipients: str) -> TaskResult:
    """Queue a message to ``recipients`` as the outbox does."""
    message = mail.EmailMessage("Hi", "Body", None, list(recipients))
    return await send_stored_message.aenqueue(**stored_message(message))


async def test_a_stored_message_goes_to_each_canonical_mailbox_once(
    smtp_server: SMTPTestServer, runner: JobRunner
) -> None:
    result = await finished(await stored('"ADA"@Example.com', "Ada@EXAMPLE.com", "b@example.com"))
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 2)
    (received,) = smtp_server.received
    assert received.recipients == ["ada@example.com", "b@example.com"]
    # Only the envelope is canonical: the headers are the caller's, as stored.
    assert received.message["To"] == "ADA@Example.com, Ada@EXAMPLE.com, b@example.com"


async def test_undeliverable_recipients_are_left_out_and_counted_not_named(
    smtp_server: SMTPTestServer, runner: JobRunner
) -> None:
    with log_records("mailer.tasks") as records:
        result = await finished(await stored("ok@example.com", "root@localhost", "x@[10.0.0.1]"))
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 1)
    assert smtp_server.recipients() == ["ok@example.com"]
    (record,) = records
    assert record.getMessage().startswith("Stored message: 2 of 3 recipients left out (")
    assert "localhost" not in record.getMessage() and "10.0.0.1" not in record.getMessage()


async def test_a_stored_message_with_no_deliverable_recipient_fails_after_one_attempt(
    smtp_server: SMTPTestServer, runner: JobRunner
) -> None:
    result = await finished(await stored("root@localhost"))
    assert (result.status, result.attempts) == (TaskResultStatus.FAILED, 1)
    assert "UndeliverableAddress" in result.errors[0].exception_class_path
    assert smtp_server.data_commands == 0


async def test_a_stored_message_goes_to_the_relay_never_back_into_the_outbox(
    smtp_server: SMTPTestServer,
) -> None:
    # MAILERS["default"] is the outbox here (mailers_for): the task must not use it.
    message = mail.EmailMessage("Hi", "Body", None, ["to@example.com"])
    assert await send_stored_message.acall(**stored_message(message)) == 1
    assert smtp_server.recipients() == ["to@example.com"]
    assert not await Job.objects.aexists()


async def test_a_new_accounts_welcome_mail_takes_the_account_its_signup_kept(
    smtp_server: SMTPTestServer, runner: JobRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = []

    def take(email: str) -> Any:
        taken.append(account := new_accounts_take(email))
        return account

    new_accounts_take = new_accounts.take
    monkeypatch.setattr(new_accounts, "take", take)
    await request_threads.run(register_address, "kept@example.com", "127.0.0.1")
    (job,) = await jobs.all_finished(1)
    assert job.status == TaskResultStatus.SUCCESSFUL

    assert [account and account.email for account in taken] == ["kept@example.com"]
    (sent,) = smtp_server.received
    text = next(part for part in sent.message.walk() if part.get_content_type() == "text/plain")
    link = next(word for word in text.get_content().split() if "/set-password/" in word)
    uidb64, token = link.rstrip("/").split("/")[-2:]
    user = await User.objects.aget(email="kept@example.com")
    assert urlsafe_base64_decode(uidb64).decode() == str(user.pk)
    assert default_token_generator.check_token(user, token)
