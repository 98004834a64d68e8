"""A real SMTP server (aiosmtpd, in a thread) whose answers a test can script."""

import asyncio
import threading
import time
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from functools import cached_property
from typing import Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.ports import free_port
from tests.support.waiting import wait_until


@dataclass(frozen=True)
class Received:
    recipients: list[str]
    arrived_at: float  # time.monotonic()
    data: bytes  # The DATA as the server got it (dot-unstuffed, CRLF line endings).
    mail_options: list[str]  # Of MAIL FROM: SMTPUTF8, BODY=8BITMIME, SIZE.

    @cached_property
    def message(self) -> EmailMessage:
        # Parsed when a test reads it, not on the server's thread as each mail
        # arrives: with policy.default that is ~1.5 ms a mail, taken from the
        # service under test (the GIL) in tests that send dozens.
        return message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


class SMTPTestServer:
    """Accepts mail with an optional delay; ``script`` makes the next DATA commands
    answer with a code ("451", "550"), hang up ("drop") or never answer ("stall");
    ``refuse_recipients`` makes the next RCPT commands answer with the given
    replies, where ``{address}`` stands for the recipient, as real servers quote it.
    ``hold`` keeps each accepted mail's DATA unanswered until ``release``, so a test
    can see how many are in flight at once without guessing a delay.
    ``smtputf8=False`` makes it a server that does not offer SMTPUTF8."""

    def __init__(
        self, delay: float = 0.0, port: int | None = None, *, smtputf8: bool = True
    ) -> None:
        self.delay = delay
        self.port = port or free_port()
        self.received: list[Received] = []
        self.data_commands = 0
        self.quits = 0  # sessions the client ended with QUIT
        self._script: list[str] = []
        self._recipient_replies: list[str] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._released.set()
        self._controller = Controller(
            self, hostname="127.0.0.1", port=self.port, enable_SMTPUTF8=smtputf8
        )

    def start(self) -> Self:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def script(self, *actions: str) -> None:
        with self._lock:
            self._script.extend(actions)

    def hold(self) -> None:
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def refuse_recipients(self, *replies: str) -> None:
        with self._lock:
            self._recipient_replies.extend(replies)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        with self._lock:
            reply = self._recipient_replies.pop(0) if self._recipient_replies else None
        if reply is not None:
            return reply.format(address=address)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            self.data_commands += 1
            action = self._script.pop(0) if self._script else "accept"
        if action == "stall":
            await asyncio.sleep(3600)
        if action == "drop":
            assert server.transport is not None
            server.transport.close()
            return "421 closing"
        if action != "accept":
            return f"{action} scripted answer"
        while not self._released.is_set():
            await asyncio.sleep(0.002)
        if self.delay:
            await asyncio.sleep(self.delay)
        if server.transport is None or server.transport.is_closing():
            # The client gave up before our 250: it was never accepted.
            return "421 too late"
        data = envelope.original_content or b""
        with self._lock:
            self.received.append(
                Received(
                    list(envelope.rcpt_tos), time.monotonic(), data, list(envelope.mail_options)
                )
            )
        return "250 OK"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            self.quits += 1
        return "221 Bye"

    def recipients(self) -> list[str]:
        with self._lock:
            return [address for mail in self.received for address in mail.recipients]

    def message_ids(self) -> list[str]:
        with self._lock:
            return [str(mail.message["Message-ID"]) for mail in self.received]

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} mails within {timeout}s, got {len(self.received)}")

    def wait_for_recipients(self, expected: set[str], timeout: float = 20.0) -> None:
        """Wait until each of ``expected`` got a mail (duplicates do not count twice)."""
        wait_until(
            lambda: expected <= set(self.recipients()), f"mail for {sorted(expected)}", timeout
        )

    async def until(self, count: int, timeout: float = 20.0) -> list[Received]:
        """``wait_for`` for async tests: polls without blocking the event loop."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            await asyncio.sleep(0.005)
        raise AssertionError(f"expected {count} mails within {timeout}s, got {len(self.received)}")
