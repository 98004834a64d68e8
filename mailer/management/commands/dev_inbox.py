"""A local SMTP server for development: prints each mail and keeps it as a .eml file."""

import asyncio
import logging
import re
import signal
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

LINK = re.compile(r"https?://\S+")


class InboxHandler:
    def __init__(self, directory: Path, write: Any) -> None:
        self.directory = directory
        self.write = write
        self.count = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.count += 1
        raw = envelope.original_content or b""
        message: EmailMessage = message_from_bytes(raw, policy=policy.default)  # type: ignore[assignment]
        path = self.directory / f"{self.count:05d}.eml"
        path.write_bytes(raw)
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
        inbox = Path(directory)
        inbox.mkdir(parents=True, exist_ok=True)
        handler = InboxHandler(inbox, lambda text: self.stdout.write(text))
        # Loopback only: this server accepts mail from anyone who can reach it.
        logging.getLogger("mail.log").setLevel(logging.WARNING)  # Per-command chatter.
        controller = Controller(handler, hostname="127.0.0.1", port=port)
        controller.start()
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
