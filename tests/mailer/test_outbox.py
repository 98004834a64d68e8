"""Django's mail through the outbox: queued with the caller's transaction, sent by the
runner as stored, to a real SMTP server."""

from base64 import b64decode
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core import mail
from django.core.exceptions import SynchronousOnlyOperation
from django.db import transaction
from django.tasks import TaskResultStatus, task_backends

from background.models import Job
from background.runner import JobRunner
from mailer.outbox import stored_message
from tests.conftest import mailers_for
from tests.support.jobs import reaches
from tests.support.ports import free_port
from tests.support.smtp_server import SMTPTestServer

pytestmark = pytest.mark.django_db(transaction=True)

TASK = "mailer.tasks.send_stored_message"
DUMMY_TASKS = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}
BINARY = bytes(range(256)) * 8  # Every byte value, as a binary attachment carries.


class Rollback(Exception):
    pass


@pytest.fixture
def outbox(settings: Any) -> None:
    """The outbox as settings.py configures it, with no SMTP server needed."""
    settings.MAILERS = mailers_for(free_port())  # See tests/conftest.py.


def newsletter() -> mail.EmailMultiAlternatives:
    """Text, an HTML alternative and two attachments, none of it plain ASCII."""
    message = mail.EmailMultiAlternatives(
        "Grüße aus Köln",
        "Hallo Jürgen,\n\nanbei die Zahlen. Ça va?\n",
        "Signup <noreply@example.com>",
        ["jurgen@example.com"],
        cc=["Ada <ada@example.com>"],
        bcc=["audit@example.com"],
    )
    message.attach_alternative("<p>Hallo <b>Jürgen</b> &mdash; ça va?</p>", "text/html")
    message.attach("zahlen.png", BINARY, "image/png")
    message.attach("notizen-ä.txt", "naïve notes\n", "text/plain")
    return message


def stored_bytes(job: Job) -> bytes:
    return b64decode(job.kwargs["message"])


# -- queueing ------------------------------------------------------------------


@pytest.mark.usefixtures("outbox")
def test_sync_code_queues_a_job_and_returns_without_touching_smtp() -> None:
    # Nothing listens on the relay's port: an inline send would raise.
    assert mail.send_mail("Hi", "Body", None, ["to@example.com"]) == 1
    (job,) = Job.objects.all()
    assert (job.task_path, job.status) == (TASK, TaskResultStatus.READY)
    assert job.kwargs["sender"] == "noreply@example.com"  # DEFAULT_FROM_EMAIL's mailbox
    assert job.kwargs["recipients"] == ["to@example.com"]
    assert b"Subject: Hi\r\n" in stored_bytes(job)


@pytest.mark.usefixtures("outbox")
def test_the_job_commits_or_rolls_back_with_the_callers_transaction() -> None:
    with transaction.atomic():
        mail.send_mail("Kept", "Body", None, ["kept@example.com"])
        assert Job.objects.filter(task_path=TASK).exists()  # Written inside it.
    with pytest.raises(Rollback), transaction.atomic():
        mail.send_mail("Dropped", "Body", None, ["dropped@example.com"])
        raise Rollback
    assert [job.kwargs["recipients"] for job in Job.objects.all()] == [["kept@example.com"]]


@pytest.mark.usefixtures("outbox")
def test_another_tasks_backend_gets_the_message_only_after_the_commit(settings: Any) -> None:
    settings.TASKS = DUMMY_TASKS
    backend = task_backends["default"]
    with transaction.atomic():
        mail.send_mail("Later", "Body", None, ["later@example.com"])
        assert backend.results == []  # type: ignore[attr-defined]
    assert [r.kwargs["recipients"] for r in backend.results] == [["later@example.com"]]  # type: ignore[attr-defined]
    with pytest.raises(Rollback), transaction.atomic():
        mail.send_mail("Never", "Body", None, ["never@example.com"])
        raise Rollback
    assert len(backend.results) == 1  # type: ignore[attr-defined]


@pytest.mark.usefixtures("outbox")
def test_send_mass_mail_with_a_message_django_would_refuse_queues_none() -> None:
    messages = [("One", "1", None, ["one@example.com"]), ("Two", "2", None, ["bad\n@x.com"])]
    with pytest.raises(ValueError):
        mail.send_mass_mail(messages)
    assert not Job.objects.exists()
    assert mail.send_mass_mail([messages[0], ("Two", "2", None, ["two@example.com"])]) == 2
    assert Job.objects.count() == 2


@pytest.mark.usefixtures("outbox")
@pytest.mark.parametrize(
    "recipient",
    ["to@example.com\r\nBcc: victim@example.com", "one@example.com, two@example.com", "<>"],
)
def test_an_address_django_would_refuse_raises_in_the_caller(recipient: str) -> None:
    with pytest.raises(ValueError):
        mail.send_mail("Hi", "Body", None, [recipient])
    assert not Job.objects.exists()


@pytest.mark.usefixtures("outbox")
def test_the_stored_message_keeps_its_own_message_id_and_the_callers_object_is_unchanged() -> None:
    own = mail.EmailMessage("Hi", "Body", None, ["to@example.com"], headers={"Message-ID": "<x@y>"})
    assert b"Message-ID: <x@y>\r\n" in b64decode(stored_message(own)["message"])
    plain = mail.EmailMessage("Hi", "Body", None, ["to@example.com"])
    first, second = (b64decode(stored_message(plain)["message"]) for _ in range(2))
    assert first != second  # Each send is a new message with its own id...
    assert "message-id" not in {name.lower() for name in plain.extra_headers}  # ...set on a copy.
    assert b"@example.com>\r\n" in first  # Named after the sender's domain, not this host.


async def test_async_code_calling_it_directly_is_refused_and_queues_through_sync_to_async(
    outbox: None,
) -> None:
    with pytest.raises(SynchronousOnlyOperation):
        mail.send_mail("Hi", "Body", None, ["to@example.com"])
    assert await sync_to_async(mail.send_mail)("Hi", "Body", None, ["to@example.com"]) == 1
    assert await Job.objects.filter(task_path=TASK).acount() == 1


# -- sending, through the runner and a real SMTP server -------------------------


async def test_a_queued_message_is_sent_by_the_runner(
    smtp_server: SMTPTestServer, runner: JobRunner
) -> None:
    await sync_to_async(mail.send_mail)("Hi", "Body", None, ["to@example.com"])
    (received,) = await smtp_server.until(1)
    assert received.recipients == ["to@example.com"]
    assert received.message["Subject"] == "Hi"
    job = await Job.objects.aget(task_path=TASK)
    await reaches(job.id, TaskResultStatus.SUCCESSFUL)


async def test_attachments_and_alternatives_arrive_byte_for_byte(
    smtp_server: SMTPTestServer, runner: JobRunner
) -> None:
    await sync_to_async(newsletter().send)()
    (received,) = await smtp_server.until(1)
    job = await Job.objects.aget(task_path=TASK)
    assert received.data == stored_bytes(job)  # What was queued is what the server got.

    # And what was queued is what the caller wrote: every part, decoded (text
    # with the wire's CRLF line endings, as from Django's own SMTP backend).
    assert sorted(received.recipients) == [
        "ada@example.com",
        "audit@example.com",
        "jurgen@example.com",
    ]
    assert "Bcc" not in received.message
    assert received.message["Subject"] == "Grüße aus Köln"
    text = received.message.get_body(("plain",))
    html = received.message.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content() == "Hallo Jürgen,\r\n\r\nanbei die Zahlen. Ça va?\r\n"
    assert html.get_content() == "<p>Hallo <b>Jürgen</b> &mdash; ça va?</p>\r\n"
    png, notes = received.message.iter_attachments()
    assert (png.get_filename(), png.get_content_type()) == ("zahlen.png", "image/png")
    assert png.get_content() == BINARY
    assert (notes.get_filename(), notes.get_content()) == ("notizen-ä.txt", "naïve notes\r\n")
    # 7-bit clean: fit for a relay without 8BITMIME.
    assert received.data.isascii()


async def test_a_retry_sends_the_identical_message(
    smtp_server: SMTPTestServer, runner: JobRunner
) -> None:
    smtp_server.script("451")  # The first attempt is deferred.
    await sync_to_async(newsletter().send)()
    (received,) = await smtp_server.until(1)
    job = await reaches((await Job.objects.aget(task_path=TASK)).id, TaskResultStatus.SUCCESSFUL)
    assert (smtp_server.data_commands, job.attempts) == (2, 2)
    assert received.data == stored_bytes(job)
    assert received.message["Message-ID"].endswith("@example.com>")


async def test_a_permanent_refusal_fails_the_job_at_once(
    smtp_server: SMTPTestServer, runner: JobRunner
) -> None:
    smtp_server.script("550")
    await sync_to_async(mail.send_mail)("Hi", "Body", None, ["to@example.com"])
    job = await reaches((await Job.objects.aget(task_path=TASK)).id, TaskResultStatus.FAILED)
    assert (job.attempts, smtp_server.data_commands) == (1, 1)
    assert "550" in job.errors[0]["traceback"]


def test_a_failed_message_does_not_mail_the_admins_about_itself(
    settings: Any, smtp_server: SMTPTestServer
) -> None:
    # Django logs each failed task as an error on "django.tasks", and mails
    # ADMINS about "django.*" errors: that report would be a job, whose
    # failure would be another. Run as a sync worker (Celery, db_worker) does.
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}
    settings.ADMINS = ["ops@example.com"]
    smtp_server.script("550", "550", "550")
    mail.send_mail("Hi", "Body", None, ["to@example.com"])
    assert smtp_server.data_commands == 1
