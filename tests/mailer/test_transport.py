"""The envelope and the permanent errors, against a real SMTP server."""

from collections.abc import Iterator
from email.message import EmailMessage

import aiosmtplib
import pytest

from mailer.transport import DeliveryError, SMTPTransport, classify
from tests.support.smtp_server import SMTPTestServer


@pytest.fixture
def plain_server() -> Iterator[SMTPTestServer]:
    """A server that does not offer SMTPUTF8."""
    server = SMTPTestServer(smtputf8=False).start()
    yield server
    server.stop()


def transport_for(server: SMTPTestServer) -> SMTPTransport:
    return SMTPTransport(host="127.0.0.1", port=server.port, timeout=2.0)


def mail(to_header: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "from@example.com"
    message["To"] = to_header
    message["Subject"] = "Hello"
    message.set_content("Hi")
    return message


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


async def test_a_non_ascii_mailbox_to_a_server_without_smtputf8_fails_permanently(
    plain_server: SMTPTestServer,
) -> None:
    transport = transport_for(plain_server)
    with pytest.raises(DeliveryError) as failure:
        await transport.send(
            mail("x@example.com"), sender="a@example.com", recipients=["josé@b.example"]
        )
    assert failure.value.transient is False
    assert "SMTPUTF8" in str(failure.value)
    assert plain_server.data_commands == 0
    # The connection is still good for ASCII mail.
    await transport.send(mail("x@example.com"), sender="a@example.com", recipients=["ok@b.example"])
    assert plain_server.recipients() == ["ok@b.example"]


async def test_a_non_ascii_mailbox_arrives_where_smtputf8_is_offered(
    smtp_server: SMTPTestServer,
) -> None:
    await transport_for(smtp_server).send(
        mail("x@example.com"), sender="a@example.com", recipients=["josé@b.example"]
    )
    assert smtp_server.recipients() == ["josé@b.example"]


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
