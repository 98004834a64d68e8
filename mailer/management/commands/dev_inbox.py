"""A local SMTP server for development: prints each mail and keeps it as a .eml file."""

import asyncio
import logging
import re
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

if TYPE_CHECKING:
    from aiosmtpd.smtp import SMTP, Envelope, Session

LINK = re.compile(r"https?://\S+")


def save_mail(directory: Path, raw: bytes, now: datetime) -> Path:
    """Write one mail under a new name: its arrival time (UTC), so names sort by arrival.

    Names never repeat across runs; two mails in the same microsecond get a suffix.
    """
    stem = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    suffix = 0
    while True:
        path = directory / (f"{stem}_{suffix}.eml" if suffix else f"{stem}.eml")
        try:
            with path.open("xb") as file:  # Never over an earlier mail.
                file.write(raw)
            return path
        except FileExistsError:
            suffix += 1


class InboxHandler:
    def __init__(self, directory: Path, write: Callable[[str], None]) -> None:
        self.directory = directory
        self.write = write
        self.count = 0

    async def handle_DATA(self, server: "SMTP", session: "Session", envelope: "Envelope") -> str:
        self.count += 1
        raw = envelope.original_content or b""
        message: EmailMessage = message_from_bytes(raw, policy=policy.default)  # type: ignore[assignment]
        path = save_mail(self.directory, raw, datetime.now(UTC))
        body = message.get_body(preferencelist=("plain",))
        links = LINK.findall(body.get_content()) if body is not None else []
        self.write(
            f"\n--- mail {self.count} -> {', '.join(envelope.rcpt_tos)}\n"
            f"Subject: {message['Subject']}\n"
            + "".join(f"Link: {link}\n" for link in links)
            + f"Saved: {path}\n"
        )
        return "250 Message accepted for delivery"


class Command(BaseCommand):
    help = "Run a development SMTP inbox on loopback (never for production)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--port", type=int, default=settings.MAILERS["smtp"]["OPTIONS"]["port"])
        parser.add_argument("--directory", default=str(settings.BASE_DIR / "var" / "inbox"))

    def handle(self, *args: Any, port: int, directory: str, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("dev_inbox is a development tool: run it with DEBUG=1.")
        try:
            # A development requirement: production installs only requirements.txt.
            from aiosmtpd.controller import Controller
        except ImportError:
            raise CommandError(
                "dev_inbox needs aiosmtpd: pip install -r requirements-dev.txt"
            ) from None
        inbox = Path(directory)
        inbox.mkdir(parents=True, exist_ok=True)
        handler = InboxHandler(inbox, lambda text: self.stdout.write(text))
        # Loopback only: this server accepts mail from anyone who can reach it.
        logging.getLogger("mail.log").setLevel(logging.WARNING)  # Per-command chatter.
        controller = Controller(handler, hostname="127.0.0.1", port=port)
        try:
            controller.start()
        except OSError as error:  # Most often another inbox (bin/dev) on the port.
            raise CommandError(
                f"Cannot listen on 127.0.0.1:{port} ({error.strerror or error}); "
                "choose another port (EMAIL_PORT=... bin/dev)."
            ) from None
        self.stdout.write(f"Development inbox on 127.0.0.1:{port}, saving mails in {inbox}")
        try:
            asyncio.run(self._wait_for_signal())
        finally:
            controller.stop()

    async def _wait_for_signal(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
