"""How the bytes of a mail reach the SMTP server.

A small pool of aiosmtplib connections per long-lived event loop (the job
runner's); on any other loop, such as the one a sync worker (``db_worker``, a
Celery worker) makes for a single task, each send opens a connection and
closes it with QUIT, since that loop and its connections would be abandoned
when the task ends. Every SMTP operation is bounded by EMAIL_TIMEOUT and a
whole send by three times that. Failures are raised as ``DeliveryError``
saying whether trying again later can help; when to try again is the
caller's business.
"""

import asyncio
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage, Message
from typing import Any, Self

import aiosmtplib
from django.conf import settings

logger = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class Envelope:
    sender: str
    recipients: tuple[str, ...]

    async def send(self, client: aiosmtplib.SMTP, message: EmailMessage | Message) -> None:
        # aiosmtplib asks for SMTPUTF8 when an address is not ASCII, and
        # raises SMTPNotSupported if the server does not offer it.
        await client.send_message(message, sender=self.sender, recipients=list(self.recipients))


class SMTPTransport:
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
        pool_size: int = 8,
        keep_connections: bool = True,
    ) -> None:
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
        self._slots = asyncio.Semaphore(pool_size)
        self._idle: list[aiosmtplib.SMTP] = []

    @classmethod
    def from_settings(cls, *, keep_connections: bool = True) -> Self:
        """Built from MAILERS["default"]["OPTIONS"], the SMTP settings Django's mail uses."""
        options = settings.MAILERS["default"]["OPTIONS"]
        return cls(
            host=options["host"],
            port=options["port"],
            username=options.get("username") or "",
            password=options.get("password") or "",
            use_starttls=bool(options.get("use_tls")),
            use_implicit_tls=bool(options.get("use_ssl")),
            timeout=float(options.get("timeout") or 10),
            pool_size=settings.EMAIL_POOL_SIZE,
            keep_connections=keep_connections,
        )

    async def send(
        self, message: EmailMessage | Message, *, sender: str, recipients: Sequence[str]
    ) -> None:
        """Deliver ``message`` from ``sender`` to ``recipients`` (the envelope).

        The envelope is given, never derived from the headers: parsing a header
        such as ``user@[127.0.0.1]`` back gave ``RCPT TO:<>``. Raises
        DeliveryError if the server did not take the message.
        """
        envelope = Envelope(sender, tuple(recipients))
        async with self._slots:
            client = self._idle.pop() if self._idle else None
            try:
                async with asyncio.timeout(3 * self.timeout):
                    client = await self._deliver(client, message, envelope)
            except Exception as error:
                if client is not None:
                    client.close()
                raise classify(error) from error
            if self.keep_connections:
                self._idle.append(client)
            else:
                await self._quit(client)

    async def _deliver(
        self, client: aiosmtplib.SMTP | None, message: EmailMessage | Message, envelope: Envelope
    ) -> aiosmtplib.SMTP:
        if client is not None and client.is_connected:
            try:
                await envelope.send(client, message)
                return client
            except aiosmtplib.SMTPServerDisconnected:
                # Almost always the server closed the idle connection before
                # this message: send it once more on a fresh one. (At worst a
                # duplicate, with the same Message-ID.)
                client.close()
        client = aiosmtplib.SMTP(**self._connect_options)
        await client.connect()
        await envelope.send(client, message)
        return client

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            await self._quit(client)

    async def _quit(self, client: aiosmtplib.SMTP) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await client.quit()
        except Exception:
            client.close()


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
