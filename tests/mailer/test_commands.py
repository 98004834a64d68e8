"""manage.py dev_inbox: the development inbox keeps every mail, across restarts."""

import smtplib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller

from mailer.management.commands.dev_inbox import InboxHandler, save_mail
from tests.support.ports import free_port


@contextmanager
def inbox(directory: Path) -> Iterator[tuple[int, list[str]]]:
    """One run of the inbox (as one bin/dev start): its port and what it printed."""
    printed: list[str] = []
    port = free_port()
    controller = Controller(
        InboxHandler(directory, printed.append), hostname="127.0.0.1", port=port
    )
    controller.start()
    try:
        yield port, printed
    finally:
        controller.stop()


def send(port: int, subject: str) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.com", "b@example.com", subject
    message.set_content("Choose your password: http://127.0.0.1:8000/account/set-password/x/y/")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.send_message(message)


def subjects(directory: Path) -> list[str]:
    """The Subject lines of the saved mails, in the order their names sort."""
    return [
        next(line for line in path.read_text().splitlines() if line.startswith("Subject: "))
        for path in sorted(directory.glob("*.eml"))
    ]


def test_mails_from_earlier_runs_are_kept(tmp_path: Path) -> None:
    with inbox(tmp_path) as (port, printed):
        send(port, "first run, one")
        send(port, "first run, two")
    with inbox(tmp_path) as (port, printed):  # The counter starts again at 1.
        send(port, "second run")
    assert subjects(tmp_path) == [
        "Subject: first run, one",
        "Subject: first run, two",
        "Subject: second run",
    ]
    (report,) = printed
    assert "--- mail 1 -> b@example.com" in report
    assert "Link: http://127.0.0.1:8000/account/set-password/x/y/" in report
    saved = Path(report.rsplit("Saved: ", 1)[1].strip())
    assert saved.parent == tmp_path and "second run" in saved.read_text()


def test_two_mails_in_the_same_instant_get_two_files(tmp_path: Path) -> None:
    now = datetime(2026, 11, 26, 0, 40, 1, 155123, tzinfo=UTC)
    first = save_mail(tmp_path, b"Subject: one\r\n\r\n", now)
    second = save_mail(tmp_path, b"Subject: two\r\n\r\n", now)
    assert first.name == "20261126T004001.155123Z.eml"
    assert second.name == "20261126T004001.155123Z_1.eml"
    assert first.read_bytes() == b"Subject: one\r\n\r\n"
    assert second.read_bytes() == b"Subject: two\r\n\r\n"
    assert sorted([second.name, first.name]) == [first.name, second.name]
