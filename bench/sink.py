"""SMTP sink for the harness: a configurable delay and failure rate per mail,
and the arrival time of every mail by recipient (for time-to-inbox).

Run as its own process so it takes no CPU from the load generator:
``python -m bench.sink --port P --delay S --log arrivals.log`` appends one line
``<unix time of the 250> <recipient>`` per accepted recipient.
"""

import argparse
import asyncio
import random
import signal
import threading
import time
from typing import IO

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class SMTPSink:
    def __init__(
        self,
        port: int,
        delay: float = 0.0,
        failure_rate: float = 0.0,
        log: IO[str] | None = None,
    ) -> None:
        self.delay = delay
        self.failure_rate = failure_rate
        self.arrivals: dict[str, float] = {}  # recipient -> time.time() of its 250
        self.duplicates = 0
        self._log = log
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
                if self._log is not None:
                    self._log.write(f"{now:.6f} {recipient}\n")
        return "250 OK"

    def count(self) -> int:
        with self._lock:
            return len(self.arrivals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--failure-rate", type=float, default=0.0)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with open(args.log, "a", buffering=1) as log:
        sink = SMTPSink(args.port, args.delay, args.failure_rate, log).start()
        print("ready", flush=True)
        stop.wait()
        sink.stop()


if __name__ == "__main__":
    main()
