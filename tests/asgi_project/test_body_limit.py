"""The body limits at the ASGI level, in front of the real Django application.

The server side is scripted (tests/support/asgi_client.py: which chunks
arrive, and when the client falls silent) so each test can count how much of
a body was read. The same limits against a real uvicorn are in
tests/e2e/test_hostile_input.py.
"""

import asyncio
from typing import Any

from asgi_project.asgi import django_application
from asgi_project.body_limit import ASGIApp, with_body_limit
from tests.support.asgi_client import ScriptedClient, call

LIMIT = 1000


def post_headers(declared: int | None) -> list[tuple[bytes, bytes]]:
    headers = [(b"host", b"testserver"), (b"content-type", b"application/json")]
    if declared is not None:
        headers.append((b"content-length", str(declared).encode()))
    return headers


async def run(
    client: ScriptedClient,
    declared: int | None,
    path: str = "/signup/",
    *,
    max_bytes: int | None = LIMIT,
    timeout: float = 30,
    app: ASGIApp = django_application,
) -> ScriptedClient:
    limited = with_body_limit(app, max_bytes=max_bytes, timeout=timeout)
    return await call(limited, client, "POST", path, post_headers(declared))


def in_chunks(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


# A body the signup view answers without the database: it reached the view whole.
NOT_A_STRING = b'{"email": 42, "pad": "' + b"x" * (LIMIT - 24) + b'"}'


async def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    client = await run(ScriptedClient([b"x" * 100] * 20), declared=LIMIT + 1)
    assert client.status == 413
    assert client.json() == {"detail": "Request body too large."}
    assert client.headers[b"connection"] == b"close"
    assert client.pulled == 0


async def test_an_undeclared_body_is_refused_once_it_passes_the_limit() -> None:
    client = await run(ScriptedClient([b"x" * 300] * 100), declared=None)
    assert client.status == 413
    assert client.headers[b"connection"] == b"close"
    assert client.pulled == 4  # 1,200 bytes: the first chunk past 1,000, not the 30,000.


async def test_a_body_at_the_limit_reaches_the_view_whole() -> None:
    assert len(NOT_A_STRING) == LIMIT
    for declared in (LIMIT, None):
        client = await run(ScriptedClient(in_chunks(NOT_A_STRING, 300)), declared=declared)
        assert client.status == 400
        assert client.json()["errors"] == {"email": ["Must be a string."]}


async def test_one_byte_over_the_limit_is_refused_declared_or_not() -> None:
    body = NOT_A_STRING + b" "
    for declared in (LIMIT + 1, None):
        client = await run(ScriptedClient(in_chunks(body, 300)), declared=declared)
        assert client.status == 413


async def test_a_body_that_does_not_arrive_in_time_gets_408_on_any_path() -> None:
    paths = ("/signup/", "/healthz", "/no-such-page")
    silent = {path: ScriptedClient([], finished=False) for path in paths}
    partial = {path: ScriptedClient([b"{"] * 3, finished=False) for path in paths}
    # Each call waits out its deadline: all of them at once.
    await asyncio.gather(
        *(run(silent[path], declared=100, path=path, timeout=0.05) for path in paths),
        *(run(partial[path], declared=None, path=path, timeout=0.05) for path in paths),
    )
    for path in paths:
        assert silent[path].status == 408
        assert silent[path].json() == {"detail": "Request body not received in time."}
        assert silent[path].headers[b"connection"] == b"close"
        assert partial[path].status == 408
        assert partial[path].pulled == 3


async def test_without_a_size_limit_any_body_reaches_django() -> None:
    client = await run(
        ScriptedClient([b"x" * 64 * 1024] * 8), declared=None, path="/no-such-page", max_bytes=None
    )
    assert client.status == 404
    assert client.pulled == 8


async def test_the_deadline_ends_with_the_body() -> None:
    # After the body, Django waits on receive() for a disconnect while the view
    # runs; a slow view must not be cut off as a slow client.
    async def slow_view(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while (await receive())["more_body"]:
            pass
        listening = asyncio.ensure_future(receive())
        await asyncio.sleep(0.05)  # Well past the 0.01 s deadline.
        assert not listening.done()
        listening.cancel()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    client = await run(ScriptedClient([b"{}"]), declared=2, timeout=0.01, app=slow_view)
    assert client.status == 204
