"""SMTP sink for the harness: a configurable delay and failure rate per mail,
and the arrival time of every mail by recipient (for time-to-inbox).

Run as its own process so it takes no CPU from the load generator:
``python -m bench.sink --port P --delay S --log arrivals.log`` appends one line
``<unix time of the 250> <recipient>`` per accepted recipient.

It stands in for a relay on another machine, yet shares this machine's two
cores with the service: whatever it spends is taken from the scenarios that
send mail, and not from the floor, which sends none. So it is a few lines of
``asyncio.Protocol`` rather than aiosmtpd, whose per-mail parsing cost 1.7 ms
of CPU at 60 mails/s on a slow VM, 10 % of a core. Like the relays a service
meets (Postfix, Exim, the big senders), it offers PIPELINING; it keeps no
message body.
"""

import argparse
import asyncio
import random
import signal
import time
from typing import IO, cast

EHLO_REPLY = b"250-bench-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
END_OF_DATA = b"\r\n.\r\n"
# Arrival lines are written out this often (s), not one write per mail: the
# stamp in each line is taken at the 250, so batching them changes no figure.
FLUSH_EVERY = 0.02


class ArrivalLog:
    """Buffers ``<time> <recipient>`` lines and writes them out every FLUSH_EVERY seconds."""

    def __init__(self, file: IO[str]) -> None:
        self._file = file
        self._lines: list[str] = []

    def add(self, stamp: float, recipient: str) -> None:
        if not self._lines:
            asyncio.get_running_loop().call_later(FLUSH_EVERY, self.flush)
        self._lines.append(f"{stamp:.6f} {recipient}\n")

    def flush(self) -> None:
        if self._lines:
            self._file.write("".join(self._lines))
            self._file.flush()
            self._lines.clear()


class SinkConnection(asyncio.Protocol):
    """One SMTP session: replies to what a client sends, pipelined or not."""

    def __init__(self, log: ArrivalLog, delay: float, failure_rate: float) -> None:
        self._log = log
        self._delay = delay
        self._failure_rate = failure_rate
        self._buffer = b""
        self._recipients: list[str] = []
        self._in_data = False
        self._waiting = False  # A delayed reply to DATA is pending: read no further.
        self._quitting = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass.
        self._transport.write(b"220 bench-sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._process()

    def _process(self) -> None:
        replies: list[bytes] = []  # One write for a pipelined group of commands.
        while not (self._waiting or self._quitting or self._transport.is_closing()):
            if self._in_data:
                # The end of data may also be the first line (an empty body).
                end = 0 if self._buffer.startswith(b".\r\n") else self._buffer.find(END_OF_DATA)
                if end < 0:
                    break
                self._buffer = self._buffer[end + (3 if end == 0 else len(END_OF_DATA)) :]
                self._in_data = False
                if self._delay:
                    self._waiting = True
                    asyncio.get_running_loop().call_later(self._delay, self._delayed_end_of_data)
                else:
                    replies.append(self._end_of_data())
                continue
            line, found, rest = self._buffer.partition(b"\r\n")
            if not found:
                break
            self._buffer = rest
            replies.append(self._command(line))
        if replies:
            self._transport.write(b"".join(replies))
        if self._quitting:
            self._transport.close()

    def _command(self, line: bytes) -> bytes:
        verb, _, argument = line.partition(b" ")
        verb = verb.upper()
        if verb == b"EHLO":
            return EHLO_REPLY
        if verb in (b"HELO", b"NOOP"):
            return b"250 OK\r\n"
        if verb in (b"MAIL", b"RSET"):
            self._recipients.clear()
            return b"250 OK\r\n"
        if verb == b"RCPT":
            address = argument.partition(b":")[2].strip().partition(b">")[0].lstrip(b"<")
            self._recipients.append(address.decode("utf-8", "replace"))
            return b"250 OK\r\n"
        if verb == b"DATA":
            if not self._recipients:
                return b"503 no valid recipients\r\n"
            self._in_data = True
            return b"354 end with <CRLF>.<CRLF>\r\n"
        if verb == b"QUIT":
            self._quitting = True
            return b"221 bye\r\n"
        return b"502 not implemented\r\n"

    def _end_of_data(self) -> bytes:
        recipients, self._recipients = self._recipients, []
        if self._failure_rate and random.random() < self._failure_rate:
            return b"451 sink says try later\r\n"
        now = time.time()
        for recipient in recipients:
            self._log.add(now, recipient)
        return b"250 OK\r\n"

    def _delayed_end_of_data(self) -> None:
        self._waiting = False
        if not self._transport.is_closing():
            self._transport.write(self._end_of_data())
            self._process()


async def serve(port: int, delay: float, failure_rate: float, file: IO[str]) -> None:
    loop = asyncio.get_running_loop()
    log = ArrivalLog(file)
    server = await loop.create_server(
        lambda: SinkConnection(log, delay, failure_rate), "127.0.0.1", port, backlog=1024
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print("ready", flush=True)
    await stop.wait()
    server.close()
    log.flush()


try:
    from uvloop import new_event_loop as loop_factory  # What uvicorn runs on, where installed.
except ImportError:
    loop_factory = None  # type: ignore[assignment]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--failure-rate", type=float, default=0.0)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    with open(args.log, "a") as file:
        service = serve(args.port, args.delay, args.failure_rate, file)
        asyncio.run(service, loop_factory=loop_factory)


if __name__ == "__main__":
    main()
