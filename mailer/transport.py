"""How the bytes of a mail reach the SMTP server.

A pool of aiosmtplib connections per long-lived event loop (the job runner's)
that grows while mails wait for a connection and shrinks when they stop; on
any other loop, such as the one a sync worker (``db_worker``, a
Celery worker) makes for a single task, each send opens a connection and
closes it with QUIT, since that loop and its connections would be abandoned
when the task ends. It connects with the OPTIONS of ``MAILERS["smtp"]``
(``RELAY_MAILER``), never through ``django.core.mail``, whose default mailer
queues messages for this very transport (mailer/outbox.py). Every SMTP
operation is bounded by EMAIL_TIMEOUT and a whole send by three times that.
Failures are raised as ``DeliveryError`` saying whether trying again later
can help; when to try again is the caller's business.
"""

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage, Message
from typing import Any, Self

import aiosmtplib
from django.conf import settings

from asgi_project.metrics import SMTP_CONNECTIONS_OPEN

logger = logging.getLogger(__name__)

# The MAILERS alias whose OPTIONS say how to reach the SMTP server. Not
# "default": that one queues Django's mail as jobs this transport then sends.
RELAY_MAILER = "smtp"


class DeliveryError(Exception):
    """The SMTP server did not accept the message."""

    def __init__(self, reason: str, *, transient: bool, code: int | None = None) -> None:
        super().__init__(reason)
        self.transient = transient
        self.code = code


# Enough of a server's reply or a socket error to say why, in one log line.
REASON_CHARS = 120


def _reply(code: int, message: str) -> str:
    """``451 4.3.0 try again later``: the server's own words, on one short line."""
    return " ".join(f"{code} {message}".split())[:REASON_CHARS]


def classify(error: Exception) -> DeliveryError:
    """Turn an aiosmtplib or socket error into a transient or permanent DeliveryError."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        codes = [refusal.code for refusal in error.recipients]
        # Permanent only if every recipient was refused for good.
        permanent = bool(codes) and all(code >= 500 for code in codes)
        replies = "; ".join(_reply(refusal.code, refusal.message) for refusal in error.recipients)
        return DeliveryError(
            f"recipients refused ({replies})",
            transient=not permanent,
            code=max(codes, default=None),
        )
    if isinstance(error, aiosmtplib.SMTPAuthenticationError):
        # Wrong credentials are the operator's to fix, not the message's
        # fault: keep the mail until they are.
        return DeliveryError(
            f"authentication failed ({error.code})", transient=True, code=error.code
        )
    if isinstance(error, aiosmtplib.SMTPResponseException):
        reply = _reply(error.code, error.message)
        if error.code >= 500:
            return DeliveryError(f"rejected ({reply})", transient=False, code=error.code)
        return DeliveryError(f"deferred ({reply})", transient=True, code=error.code)
    if isinstance(error, (TimeoutError, aiosmtplib.SMTPTimeoutError)):
        return DeliveryError("timed out", transient=True)
    if isinstance(error, aiosmtplib.SMTPNotSupported):
        # A non-ASCII mailbox and a server without SMTPUTF8: the next attempt
        # meets the same server.
        return DeliveryError("SMTPUTF8 not offered by the server", transient=False)
    if isinstance(error, UnicodeError):
        return DeliveryError(f"cannot be encoded ({type(error).__name__})", transient=False)
    if isinstance(error, ValueError):
        # aiosmtplib's refusal of an address it cannot put on a command line.
        return DeliveryError("invalid address", transient=False)
    # Connection refused or reset, server hung up, TLS trouble: all worth a retry.
    detail = " ".join(str(error).split())[:REASON_CHARS]
    return DeliveryError(
        f"connection failed ({type(error).__name__}{': ' + detail if detail else ''})",
        transient=True,
    )


# A message object, or the finished bytes of one (RFC 5322, CRLF line endings),
# sent exactly as they are.
Mail = EmailMessage | Message | bytes


@dataclass(frozen=True)
class Envelope:
    sender: str
    recipients: tuple[str, ...]

    async def send(self, client: aiosmtplib.SMTP, message: Mail) -> None:
        if not isinstance(message, bytes):
            # aiosmtplib asks for SMTPUTF8 when an address is not ASCII, and
            # raises SMTPNotSupported if the server does not offer it.
            await client.send_message(message, sender=self.sender, recipients=list(self.recipients))
            return
        # Bytes are not flattened again: declare what send_message would.
        options = []
        if not all(address.isascii() for address in (self.sender, *self.recipients)):
            options.append("SMTPUTF8")
        if not message.isascii():
            if client.is_ehlo_or_helo_needed:
                await client.ehlo()
            if client.supports_extension("8bitmime"):
                options.append("BODY=8BITMIME")
        await client.sendmail(self.sender, list(self.recipients), message, mail_options=options)


class SMTPTransport:
    """Sends each mail on a pooled connection.

    A send takes the most recently used idle connection, or opens one while
    fewer than ``max_connections`` are open, or waits for one. Once opened,
    ``min_connections`` stay open however long they are idle; any beyond
    that are closed with QUIT after ``idle_timeout`` seconds unused, so a
    burst's connections do not stay open on the relay after it.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str = "",
        password: str = "",
        use_starttls: bool = False,
        use_implicit_tls: bool = False,
        timeout: float = 10.0,
        min_connections: int = 8,
        max_connections: int = 64,
        idle_timeout: float = 30.0,
        keep_connections: bool = True,
    ) -> None:
        if not 1 <= min_connections <= max_connections:
            raise ValueError(
                f"need 1 <= min_connections ({min_connections})"
                f" <= max_connections ({max_connections})"
            )
        self._connect_options: dict[str, Any] = {
            "hostname": host,
            "port": port,
            "username": username or None,
            "password": password or None,
            "use_tls": use_implicit_tls,
            "start_tls": use_starttls,
            "timeout": timeout,
        }
        self.timeout = timeout
        self.keep_connections = keep_connections
        self.min_connections = min_connections
        self.idle_timeout = idle_timeout
        self._slots = asyncio.Semaphore(max_connections)
        self._sending = 0  # Slots taken: each holds, or is opening, at most one connection.
        # With the loop time each was put back, oldest first: sends take the
        # newest (the least likely to have been dropped by the server), the
        # closer the oldest.
        self._idle: deque[tuple[aiosmtplib.SMTP, float]] = deque()
        self._closer: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, *, keep_connections: bool = True) -> Self:
        """Built from MAILERS["smtp"]["OPTIONS"] (``RELAY_MAILER``), the SMTP server's settings."""
        options = settings.MAILERS[RELAY_MAILER]["OPTIONS"]
        return cls(
            host=options["host"],
            port=options["port"],
            username=options.get("username") or "",
            password=options.get("password") or "",
            use_starttls=bool(options.get("use_tls")),
            use_implicit_tls=bool(options.get("use_ssl")),
            timeout=float(options.get("timeout") or 10),
            min_connections=settings.EMAIL_POOL_SIZE,
            max_connections=settings.EMAIL_POOL_MAX,
            idle_timeout=settings.EMAIL_POOL_IDLE_TIMEOUT,
            keep_connections=keep_connections,
        )

    async def send(self, message: Mail, *, sender: str, recipients: Sequence[str]) -> None:
        """Deliver ``message`` from ``sender`` to ``recipients`` (the envelope).

        The envelope is given, never derived from the headers: parsing a header
        such as ``user@[127.0.0.1]`` back gave ``RCPT TO:<>``. Raises
        DeliveryError if the server did not take the message.
        """
        envelope = Envelope(sender, tuple(recipients))
        async with self._slots:
            client = self._idle.pop()[0] if self._idle else None
            self._sending += 1
            try:
                async with asyncio.timeout(3 * self.timeout):
                    client = await self._deliver(client, message, envelope)
            except Exception as error:
                raise classify(error) from error
            finally:
                self._sending -= 1
            if self.keep_connections:
                self._put_back(client)
            else:
                await self._quit(client)

    async def _deliver(
        self, client: aiosmtplib.SMTP | None, message: Mail, envelope: Envelope
    ) -> aiosmtplib.SMTP:
        """Send on ``client`` if still connected, else on a new connection; returns the one used.

        A connection a send failed on is closed, never pooled or left open.
        """
        if client is not None and client.is_connected:
            try:
                await _send_or_close(client, message, envelope)
                return client
            except aiosmtplib.SMTPServerDisconnected:
                # Almost always the server closed the idle connection before
                # this message: send it once more on a fresh one. (At worst a
                # duplicate, with the same Message-ID.)
                pass
        elif client is not None:
            _hang_up(client)
        client = aiosmtplib.SMTP(**self._connect_options)
        try:
            await client.connect()
        except BaseException:
            client.close()
            raise
        SMTP_CONNECTIONS_OPEN.inc()
        await _send_or_close(client, message, envelope)
        return client

    def _put_back(self, client: aiosmtplib.SMTP) -> None:
        self._idle.append((client, asyncio.get_running_loop().time()))
        if self._closer is None and self._open_connections > self.min_connections:
            self._closer = asyncio.create_task(self._close_idle_surplus(), name="smtp-pool-closer")

    @property
    def _open_connections(self) -> int:
        return self._sending + len(self._idle)

    async def _close_idle_surplus(self) -> None:
        """While more than the minimum are open, close the oldest once it has been idle too long."""
        loop = asyncio.get_running_loop()
        try:
            while self._idle and self._open_connections > self.min_connections:
                client, idle_since = self._idle[0]
                wait = idle_since + self.idle_timeout - loop.time()
                if wait > 0:
                    # It may be taken meanwhile (once all newer ones are): look again after.
                    await asyncio.sleep(wait)
                    continue
                self._idle.popleft()
                await self._quit(client)
        finally:
            self._closer = None

    async def close(self) -> None:
        if self._closer is not None:
            self._closer.cancel()
            await asyncio.gather(self._closer, return_exceptions=True)
        idle, self._idle = self._idle, deque()
        for client, _ in idle:
            await self._quit(client)

    async def _quit(self, client: aiosmtplib.SMTP) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await client.quit()
        except Exception:
            pass  # The server may be gone already; hang up below either way.
        finally:
            _hang_up(client)


async def _send_or_close(client: aiosmtplib.SMTP, message: Mail, envelope: Envelope) -> None:
    try:
        await envelope.send(client, message)
    except BaseException:
        # After an error or a cancellation mid-command the session's state is
        # unknown: never reuse it.
        _hang_up(client)
        raise


def _hang_up(client: aiosmtplib.SMTP) -> None:
    """Close a connection that had been opened (and counted)."""
    client.close()
    SMTP_CONNECTIONS_OPEN.dec()


# aiosmtplib connections belong to one event loop: one transport per loop.
_transports: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SMTPTransport]" = (
    weakref.WeakKeyDictionary()
)
# Loops that announced they live long enough for connections to be worth keeping.
_long_lived_loops: "weakref.WeakSet[asyncio.AbstractEventLoop]" = weakref.WeakSet()


def get_transport() -> SMTPTransport:
    loop = asyncio.get_running_loop()
    transport = _transports.get(loop)
    if transport is None:
        keep = loop in _long_lived_loops
        transport = _transports[loop] = SMTPTransport.from_settings(keep_connections=keep)
    return transport


async def keep_connections(**kwargs: object) -> None:
    """Pool connections on this loop from now on (a receiver of ``runner_started``)."""
    loop = asyncio.get_running_loop()
    _long_lived_loops.add(loop)
    _transports.pop(loop, None)


async def close_transports(**kwargs: object) -> None:
    """Close this loop's pooled connections (a receiver of ``runner_stopped``)."""
    loop = asyncio.get_running_loop()
    _long_lived_loops.discard(loop)
    transport = _transports.pop(loop, None)
    if transport is not None:
        await transport.close()
