"""The SMTP transport against a real SMTP server: answers, drops, stalls, pooling,
the envelope, and the errors retrying cannot fix."""

import asyncio
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import pytest

from mailer.tasks import send_welcome_email
from mailer.transport import DeliveryError, SMTPTransport, classify
from signup.models import User
from tests.support.ports import free_port
from tests.support.smtp_server import SMTPTestServer
from tests.support.smtp_sessions import SessionCountingServer


def mail(to_header: str = "to@example.com") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "from@example.com"
    message["To"] = to_header
    message["Subject"] = "Hello"
    message["Message-ID"] = "<hello@example.com>"
    message.set_content("Hi")
    return message


async def send(transport: SMTPTransport, to: str = "to@example.com") -> None:
    await transport.send(mail(to), sender="from@example.com", recipients=[to])


def transport_for(server: SMTPTestServer, **options: Any) -> SMTPTransport:
    return SMTPTransport(host="127.0.0.1", port=server.port, **{"timeout": 2.0, **options})


@pytest.fixture
def plain_server() -> Iterator[SMTPTestServer]:
    """A server that does not offer SMTPUTF8."""
    server = SMTPTestServer(smtputf8=False).start()
    yield server
    server.stop()


@pytest.fixture
def counting_server() -> Any:
    server = SessionCountingServer().start()
    yield server
    server.stop()


async def test_accepted_mail_arrives_with_its_headers(smtp_server: SMTPTestServer) -> None:
    await send(transport_for(smtp_server))
    (received,) = smtp_server.received
    assert received.recipients == ["to@example.com"]
    assert received.message["Message-ID"] == "<hello@example.com>"


@pytest.mark.parametrize(
    ("action", "transient", "code"),
    [("451", True, 451), ("421", True, 421), ("550", False, 550), ("554", False, 554)],
)
async def test_answers_are_classified(
    smtp_server: SMTPTestServer, action: str, transient: bool, code: int
) -> None:
    smtp_server.script(action)
    with pytest.raises(DeliveryError) as failure:
        await send(transport_for(smtp_server))
    assert (failure.value.transient, failure.value.code) == (transient, code)
    assert f"({action} scripted answer)" in str(failure.value)  # The server's words.
    assert smtp_server.received == []


async def test_dropped_connection_is_transient(smtp_server: SMTPTestServer) -> None:
    smtp_server.script("drop")
    with pytest.raises(DeliveryError) as failure:
        await send(transport_for(smtp_server))
    assert failure.value.transient


async def test_stalled_server_times_out_as_transient(smtp_server: SMTPTestServer) -> None:
    smtp_server.script("stall")
    transport = transport_for(smtp_server, timeout=0.3)
    async with asyncio.timeout(10):  # Proves the call is bounded; no tight timing.
        with pytest.raises(DeliveryError) as failure:
            await send(transport)
    assert failure.value.transient
    await send(transport, "after@example.com")  # A fresh connection works.
    assert smtp_server.recipients() == ["after@example.com"]


async def test_refused_connection_is_transient() -> None:
    transport = SMTPTransport(host="127.0.0.1", port=free_port(), timeout=2)
    with pytest.raises(DeliveryError) as failure:
        await send(transport)
    assert failure.value.transient
    assert str(failure.value).startswith("connection failed (SMTPConnectError: Error connecting")


async def test_connections_are_reused(counting_server: SessionCountingServer) -> None:
    transport = transport_for(counting_server)
    for i in range(5):
        await send(transport, f"r{i}@example.com")
    assert len(counting_server.received) == 5
    assert counting_server.sessions_opened == 1
    await transport.close()


async def test_reconnects_after_the_server_dropped_an_idle_connection() -> None:
    server = SMTPTestServer().start()
    transport = SMTPTransport(host="127.0.0.1", port=server.port, timeout=2)
    await send(transport, "before@example.com")
    server.stop()  # Closes every connection, like an idle timeout on the server.
    restarted = SMTPTestServer(port=server.port).start()
    try:
        await send(transport, "after@example.com")
        assert restarted.recipients() == ["after@example.com"]
    finally:
        restarted.stop()


async def test_pool_size_bounds_concurrent_connections() -> None:
    server = SessionCountingServer(delay=0.02).start()
    try:
        transport = SMTPTransport(
            host="127.0.0.1", port=server.port, timeout=5, min_connections=2, max_connections=2
        )
        await asyncio.gather(*(send(transport, f"p{i}@example.com") for i in range(8)))
        assert len(server.received) == 8
        assert server.most_open == 2
        assert server.sessions_opened == 2
        await transport.close()
    finally:
        server.stop()


@pytest.mark.django_db(transaction=True)
def test_a_task_run_by_a_sync_worker_closes_its_smtp_connection(
    smtp_server: SMTPTestServer, settings: Any
) -> None:
    # db_worker or a Celery worker runs each async task on a loop of its own,
    # which is gone after the task: a connection kept there would leak. (The
    # runner keeps its connection: tests/background/test_runner.py.)
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}
    emails = [f"worker{i}@example.com" for i in range(3)]
    for email in emails:
        User.objects.create_user(email)
        send_welcome_email.enqueue(email)
    assert sorted(smtp_server.recipients()) == sorted(emails)
    assert smtp_server.quits == 3


def refusal(code: int) -> aiosmtplib.SMTPRecipientRefused:
    return aiosmtplib.SMTPRecipientRefused(code, "no", "x@example.com")


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (aiosmtplib.SMTPRecipientsRefused([refusal(550), refusal(551)]), False),
        (aiosmtplib.SMTPRecipientsRefused([refusal(550), refusal(451)]), True),
        (aiosmtplib.SMTPAuthenticationError(535, "bad credentials"), True),
        (aiosmtplib.SMTPResponseException(421, "closing"), True),
        (aiosmtplib.SMTPResponseException(554, "rejected"), False),
        (aiosmtplib.SMTPServerDisconnected("gone"), True),
        (aiosmtplib.SMTPConnectError("refused"), True),
        (ConnectionResetError(), True),
        (TimeoutError(), True),
    ],
)
def test_classify(error: Exception, transient: bool) -> None:
    assert classify(error).transient is transient


async def test_the_envelope_goes_to_the_given_recipient_not_to_the_header(
    smtp_server: SMTPTestServer,
) -> None:
    # Derived from this header, the envelope once read RCPT TO:<>.
    message = mail('"Ada" <ADA@[127.0.0.1]>')
    await transport_for(smtp_server).send(
        message, sender="bounces@example.com", recipients=["ada@office.example"]
    )
    (received,) = smtp_server.received
    assert received.recipients == ["ada@office.example"]
    assert received.message["To"].addresses[0].addr_spec == "ADA@[127.0.0.1]"


def as_given(message: EmailMessage, form: str) -> EmailMessage | bytes:
    """The message object, or its finished bytes (as the outbox's jobs send them)."""
    return message if form == "object" else message.as_bytes(policy=policy.SMTP)


@pytest.mark.parametrize("form", ["object", "bytes"])
async def test_a_non_ascii_mailbox_to_a_server_without_smtputf8_fails_permanently(
    plain_server: SMTPTestServer, form: str
) -> None:
    transport = transport_for(plain_server)
    with pytest.raises(DeliveryError) as failure:
        await transport.send(
            as_given(mail("x@example.com"), form),
            sender="a@example.com",
            recipients=["josé@b.example"],
        )
    assert failure.value.transient is False
    assert "SMTPUTF8" in str(failure.value)
    assert plain_server.data_commands == 0
    # The connection is still good for ASCII mail.
    await transport.send(mail("x@example.com"), sender="a@example.com", recipients=["ok@b.example"])
    assert plain_server.recipients() == ["ok@b.example"]


@pytest.mark.parametrize("form", ["object", "bytes"])
async def test_a_non_ascii_mailbox_arrives_where_smtputf8_is_offered(
    smtp_server: SMTPTestServer, form: str
) -> None:
    await transport_for(smtp_server).send(
        as_given(mail("x@example.com"), form),
        sender="a@example.com",
        recipients=["josé@b.example"],
    )
    assert smtp_server.recipients() == ["josé@b.example"]
    assert "SMTPUTF8" in smtp_server.received[0].mail_options


async def test_bytes_are_sent_as_they_are(smtp_server: SMTPTestServer) -> None:
    data = mail("x@example.com").as_bytes(policy=policy.SMTP)
    await transport_for(smtp_server).send(
        data, sender="a@example.com", recipients=["to@example.com"]
    )
    (received,) = smtp_server.received
    assert received.data == data
    assert "BODY=8BITMIME" not in received.mail_options  # 7-bit: nothing to declare.


async def test_8bit_bytes_are_declared_to_a_server_offering_8bitmime(
    smtp_server: SMTPTestServer,
) -> None:
    message = mail("x@example.com")
    message.set_content("Grüße", cte="8bit")
    data = message.as_bytes(policy=policy.SMTP)
    assert not data.isascii()
    await transport_for(smtp_server).send(
        data, sender="a@example.com", recipients=["to@example.com"]
    )
    (received,) = smtp_server.received
    assert received.data == data
    assert "BODY=8BITMIME" in received.mail_options


async def test_an_address_that_cannot_go_on_a_command_line_fails_permanently(
    smtp_server: SMTPTestServer,
) -> None:
    with pytest.raises(DeliveryError) as failure:
        await transport_for(smtp_server).send(
            mail("x@example.com"), sender="a@example.com", recipients=["a b@example.com"]
        )
    assert failure.value.transient is False
    assert smtp_server.data_commands == 0


@pytest.mark.parametrize(
    "error",
    [
        UnicodeEncodeError("ascii", "é", 0, 1, "ordinal not in range(128)"),
        aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server"),
        ValueError("Address 'a b' contains characters not permitted in an SMTP mailbox"),
    ],
)
def test_errors_retrying_cannot_fix_are_permanent(error: Exception) -> None:
    assert classify(error).transient is False
