"""SMTP sink for the harness: a configurable delay and failure rate per mail,
and the arrival time of every mail by recipient (for time-to-inbox)."""

import asyncio
import random
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class SMTPSink:
    def __init__(self, port: int, delay: float = 0.0, failure_rate: float = 0.0) -> None:
        self.delay = delay
        self.failure_rate = failure_rate
        self.arrivals: dict[str, float] = {}  # recipient -> time.time() of its 250
        self.duplicates = 0
        self._lock = threading.Lock()
        self._controller = Controller(self, hostname="127.0.0.1", port=port)

    def start(self) -> "SMTPSink":
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failure_rate and random.random() < self.failure_rate:
            return "451 sink says try later"
        now = time.time()
        with self._lock:
            for recipient in envelope.rcpt_tos:
                if recipient in self.arrivals:
                    self.duplicates += 1
                else:
                    self.arrivals[recipient] = now
        return "250 OK"

    def count(self) -> int:
        with self._lock:
            return len(self.arrivals)
