"""The SMTP pool grows with waiting mail, up to its maximum, and shrinks back when idle.

Against a real SMTP server that counts its sessions; the pool is judged by
what the server saw, not by the transport's own bookkeeping.
"""

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from email.message import EmailMessage

import pytest
from prometheus_client import REGISTRY

from mailer.transport import SMTPTransport
from tests.support.jobs import until
from tests.support.processes import FreshProcess
from tests.support.smtp_sessions import SessionCountingServer

MIN, MAX = 2, 6
# Far longer than a connection waits between two mails of a burst (it is
# handed straight to the next waiting send), far shorter than a test.
IDLE_TIMEOUT = 0.05


@pytest.fixture
def server() -> Iterator[SessionCountingServer]:
    server = SessionCountingServer().start()
    yield server
    server.stop()


def pool_for(server: SessionCountingServer, *, idle_timeout: float) -> SMTPTransport:
    return SMTPTransport(
        host="127.0.0.1",
        port=server.port,
        timeout=5,
        min_connections=MIN,
        max_connections=MAX,
        idle_timeout=idle_timeout,
    )


async def send_all(transport: SMTPTransport, recipients: list[str]) -> None:
    async def send(to: str) -> None:
        message = EmailMessage()
        message["From"] = "from@example.com"
        message["To"] = to
        message["Subject"] = "Hello"
        message.set_content("Hi")
        await transport.send(message, sender="from@example.com", recipients=[to])

    await asyncio.gather(*(send(to) for to in recipients))


@asynccontextmanager
async def held_at_the_server(
    transport: SMTPTransport, server: SessionCountingServer, recipients: list[str]
) -> AsyncIterator[None]:
    """Send ``recipients`` at once; the block runs while the server holds MAX of them.

    MAX mails at the server together can only travel on MAX connections, so
    the pool must have grown to its maximum: no guessing how long a mail
    should take for the sends to overlap.
    """
    server.hold()
    before = server.data_commands
    sending = asyncio.ensure_future(send_all(transport, recipients))
    try:
        await until(lambda: server.data_commands - before >= MAX, f"{MAX} mails at the server")
        yield
    finally:
        server.release()
        await sending


async def burst(
    transport: SMTPTransport, server: SessionCountingServer, recipients: list[str]
) -> None:
    async with held_at_the_server(transport, server, recipients):
        pass


def addresses(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}@example.com" for i in range(count)]


async def test_the_pool_grows_past_its_minimum_to_its_maximum_and_reuses_its_connections(
    server: SessionCountingServer,
) -> None:
    transport = pool_for(server, idle_timeout=60)
    first, second = addresses("first", 2 * MAX), addresses("second", 2 * MAX)
    await burst(transport, server, first)
    await send_all(transport, second)  # Well within the idle timeout: nothing closed between.

    assert sorted(server.recipients()) == sorted(first + second)  # Each exactly once.
    assert server.most_open == MAX
    assert server.sessions_opened == MAX
    await transport.close()
    await until(lambda: server.open_sessions() == 0, "every session closed", timeout=10)
    assert server.quits == MAX


async def test_connections_beyond_the_minimum_close_after_the_idle_timeout(
    server: SessionCountingServer,
) -> None:
    transport = pool_for(server, idle_timeout=IDLE_TIMEOUT)
    first = addresses("burst", 2 * MAX)
    await burst(transport, server, first)
    assert server.most_open == MAX

    await until(lambda: server.open_sessions() == MIN, "back to the minimum", timeout=10)
    assert server.quits == MAX - MIN  # Closed politely, not dropped.
    # The minimum stayed open: the next mails go out on it, no new session.
    after = addresses("after", MIN)
    await send_all(transport, after)
    assert server.sessions_opened == MAX
    assert sorted(server.recipients()) == sorted(first + after)
    await transport.close()


async def test_the_pool_grows_again_after_shrinking(server: SessionCountingServer) -> None:
    transport = pool_for(server, idle_timeout=IDLE_TIMEOUT)
    await burst(transport, server, addresses("one", 2 * MAX))
    await until(lambda: server.open_sessions() == MIN, "back to the minimum", timeout=10)
    server.most_open = 0
    await burst(transport, server, addresses("two", 2 * MAX))
    assert server.most_open == MAX
    assert len(server.received) == 4 * MAX
    await transport.close()


def connections_counted() -> float:
    return REGISTRY.get_sample_value("mailer_smtp_connections_open") or 0.0


async def test_the_open_connections_gauge_follows_the_pool(
    server: SessionCountingServer,
) -> None:
    baseline = connections_counted()
    transport = pool_for(server, idle_timeout=IDLE_TIMEOUT)
    async with held_at_the_server(transport, server, addresses("grow", 2 * MAX)):
        assert connections_counted() - baseline == server.open_sessions() == MAX
    await until(lambda: server.open_sessions() == MIN, "back to the minimum", timeout=10)
    # The server may see a session end before the pool counts it closed.
    await until(lambda: connections_counted() - baseline == MIN, "the gauge at the minimum")
    # A connection the server dropped is replaced: still one each.
    server.script("drop")
    await send_all(transport, addresses("redo", 1))
    assert connections_counted() - baseline == MIN
    await transport.close()
    assert connections_counted() == baseline


def test_the_minimum_cannot_exceed_the_maximum() -> None:
    with pytest.raises(ValueError, match="min_connections"):
        SMTPTransport(host="127.0.0.1", port=25, min_connections=9, max_connections=8)


def test_pool_settings(fresh_process: FreshProcess) -> None:
    show = [
        "-c",
        "from asgi_project import settings as s; print(s.EMAIL_POOL_SIZE, s.EMAIL_POOL_MAX)",
    ]
    assert fresh_process(show, {"DEBUG": "1"}).stdout.split() == ["8", "64"]
    # An EMAIL_POOL_SIZE set above 64 before EMAIL_POOL_MAX existed keeps working.
    assert fresh_process(show, {"DEBUG": "1", "EMAIL_POOL_SIZE": "100"}).stdout.split() == [
        "100",
        "100",
    ]
    below = fresh_process(show, {"DEBUG": "1", "EMAIL_POOL_SIZE": "8", "EMAIL_POOL_MAX": "4"})
    assert below.returncode != 0
    assert below.stderr.strip().splitlines()[-1] == (
        "django.core.exceptions.ImproperlyConfigured:"
        " EMAIL_POOL_MAX (4) must be at least EMAIL_POOL_SIZE (8)."
    )
