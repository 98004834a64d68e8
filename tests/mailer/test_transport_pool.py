"""The SMTP pool grows with waiting mail, up to its maximum, and shrinks back when idle.

Against a real SMTP server that counts its sessions; the pool is judged by
what the server saw, not by the transport's own bookkeeping.
"""

import asyncio
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from prometheus_client import REGISTRY

from mailer.transport import SMTPTransport
from tests.support.jobs import until
from tests.support.processes import FreshProcess
from tests.support.smtp_sessions import SessionCountingServer

MIN, MAX = 2, 6


@pytest.fixture
def slow_server() -> Iterator[SessionCountingServer]:
    """Long enough per mail that concurrent sends overlap on a busy machine."""
    server = SessionCountingServer(delay=0.1).start()
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


def addresses(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}@example.com" for i in range(count)]


async def test_the_pool_grows_past_its_minimum_to_its_maximum_and_reuses_its_connections(
    slow_server: SessionCountingServer,
) -> None:
    transport = pool_for(slow_server, idle_timeout=60)
    first, second = addresses("first", 2 * MAX), addresses("second", 2 * MAX)
    await send_all(transport, first)
    await send_all(transport, second)  # Well within the idle timeout: nothing closed between.

    assert sorted(slow_server.recipients()) == sorted(first + second)  # Each exactly once.
    assert slow_server.most_open == MAX
    assert slow_server.sessions_opened == MAX
    await transport.close()
    await until(lambda: slow_server.open_sessions() == 0, "every session closed", timeout=10)
    assert slow_server.quits == MAX


async def test_connections_beyond_the_minimum_close_after_the_idle_timeout(
    slow_server: SessionCountingServer,
) -> None:
    transport = pool_for(slow_server, idle_timeout=0.25)
    burst = addresses("burst", 2 * MAX)
    await send_all(transport, burst)
    assert slow_server.most_open == MAX

    await until(lambda: slow_server.open_sessions() == MIN, "back to the minimum", timeout=10)
    assert slow_server.quits == MAX - MIN  # Closed politely, not dropped.
    # The minimum stayed open: the next mails go out on it, no new session.
    after = addresses("after", MIN)
    await send_all(transport, after)
    assert slow_server.sessions_opened == MAX
    assert sorted(slow_server.recipients()) == sorted(burst + after)
    await transport.close()


async def test_the_pool_grows_again_after_shrinking(slow_server: SessionCountingServer) -> None:
    transport = pool_for(slow_server, idle_timeout=0.2)
    await send_all(transport, addresses("one", 2 * MAX))
    await until(lambda: slow_server.open_sessions() == MIN, "back to the minimum", timeout=10)
    slow_server.most_open = 0
    await send_all(transport, addresses("two", 2 * MAX))
    assert slow_server.most_open == MAX
    assert len(slow_server.received) == 4 * MAX
    await transport.close()


def connections_counted() -> float:
    return REGISTRY.get_sample_value("mailer_smtp_connections_open") or 0.0


async def test_the_open_connections_gauge_follows_the_pool(
    slow_server: SessionCountingServer,
) -> None:
    baseline = connections_counted()
    transport = pool_for(slow_server, idle_timeout=0.3)
    await send_all(transport, addresses("grow", 2 * MAX))
    assert connections_counted() - baseline == slow_server.open_sessions() == MAX
    await until(lambda: slow_server.open_sessions() == MIN, "back to the minimum", timeout=10)
    assert connections_counted() - baseline == MIN
    # A connection the server dropped is replaced: still one each.
    slow_server.script("drop")
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
