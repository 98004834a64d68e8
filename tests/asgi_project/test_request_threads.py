"""Django's sync work during a request runs on a reused thread, one per request in flight.

Each test calls the real Django application through the wrapper and records,
from a sync ``request_started`` receiver, the thread Django ran it on.
"""

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.asgi import get_asgi_application
from django.core.signals import request_started
from django.db import connection

from asgi_project.request_threads import RequestThreads, with_request_threads
from tests.support.asgi_client import ScriptedClient, call
from tests.support.waiting import wait_until

HEADERS = [(b"host", b"testserver")]


@pytest.fixture
def threads_seen() -> Iterator[list[threading.Thread]]:
    seen: list[threading.Thread] = []

    def record(**kwargs: Any) -> None:
        seen.append(threading.current_thread())

    request_started.connect(record)
    yield seen
    request_started.disconnect(record)


async def get(app: Any, path: str = "/no-such-page") -> ScriptedClient:
    return await call(app, ScriptedClient([b""]), "GET", path, HEADERS)


async def test_one_request_after_another_reuses_one_thread(
    threads_seen: list[threading.Thread],
) -> None:
    pool = RequestThreads()
    app = with_request_threads(get_asgi_application(), pool)

    statuses = [(await get(app)).status for _ in range(3)]

    assert statuses == [404, 404, 404]
    assert len(threads_seen) == 3
    assert threads_seen[0] is not threading.main_thread()
    assert threads_seen[1] is threads_seen[0] and threads_seen[2] is threads_seen[0]
    assert pool.idle == 1


async def test_django_alone_starts_a_thread_per_request(
    threads_seen: list[threading.Thread],
) -> None:
    """What the wrapper saves: without it, three requests, three threads."""
    app = get_asgi_application()

    for _ in range(3):
        await get(app)

    assert len({id(thread) for thread in threads_seen}) == 3


async def test_requests_in_flight_together_each_have_their_own_thread(
    threads_seen: list[threading.Thread],
) -> None:
    # Both requests' sync receivers must be inside at once: on one shared
    # thread the first would wait at the barrier alone and break it.
    both_inside = threading.Barrier(2, timeout=5)

    def wait_for_the_other(**kwargs: Any) -> None:
        both_inside.wait()

    pool = RequestThreads(keep_idle=1)
    app = with_request_threads(get_asgi_application(), pool)
    request_started.connect(wait_for_the_other)
    try:
        first, second = await asyncio.gather(get(app), get(app))
    finally:
        request_started.disconnect(wait_for_the_other)

    assert (first.status, second.status) == (404, 404)
    assert not both_inside.broken
    assert len({id(thread) for thread in threads_seen}) == 2
    # One executor is kept for the next request; the other's thread ends.
    assert pool.idle == 1

    def one_thread_left() -> bool:
        return sum(thread.is_alive() for thread in threads_seen) == 1

    wait_until(one_thread_left, "the surplus executor's thread to end", timeout=5)


@pytest.mark.django_db(transaction=True)
async def test_a_connection_left_open_on_the_thread_is_closed_at_the_next_request() -> None:
    """close_old_connections still runs on the request's own thread (CONN_MAX_AGE 0)."""
    pool = RequestThreads()
    app = with_request_threads(get_asgi_application(), pool)
    executor = pool.take()

    def open_connection() -> bool:
        connection.ensure_connection()
        return connection.connection is not None

    def is_open() -> bool:
        return connection.connection is not None

    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(executor, open_connection)
    pool.give_back(executor)

    assert (await get(app)).status == 404

    assert pool.idle == 1
    assert not await loop.run_in_executor(executor, is_open)
    executor.shutdown()
