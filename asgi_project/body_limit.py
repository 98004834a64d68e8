"""Request bodies bounded in size and time while they are read, before Django sees them.

Django's ASGI handler reads the whole body into a temporary file (on disk
past 2.5 MB) before any view runs, so a view's 413 came after a 300 MB upload
had been stored, and a client that declared a length and sent nothing held
its request open for ever. This wrapper answers first:

- a declared ``Content-Length`` over the limit: 413 at once, nothing read;
- a body without a declared length (chunked): 413 as soon as the bytes
  received pass the limit, and no more are read;
- a body not complete within ``timeout`` seconds: 408.

Each answer closes the connection: on a kept-alive connection the server
would otherwise go on reading (and discarding) the rest of the body.
"""

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOO_LARGE = (413, "Request body too large.")
TOO_SLOW = (408, "Request body not received in time.")

logger = logging.getLogger(__name__)

# What the app is told when the body is refused: the client is gone as far as
# it is concerned, so Django stops reading and answers nothing.
DISCONNECT: Message = {"type": "http.disconnect"}


def _declared_length(scope: Scope) -> int | None:
    """The Content-Length, or None: then the bytes are counted as they come.

    uvicorn answers 400 itself to a malformed or repeated Content-Length.
    """
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None


class _BoundedBody:
    """The app's ``receive``: counts body bytes and keeps the deadline until the body ends."""

    def __init__(self, receive: Receive, max_bytes: int | None, timeout: float) -> None:
        self._receive = receive
        self._max_bytes = max_bytes
        self._deadline = asyncio.get_running_loop().time() + timeout
        self._received = 0
        self._complete = False
        self.refusal: tuple[int, str] | None = None

    async def __call__(self) -> Message:
        if self._complete:  # Django now waits here for a disconnect: no deadline.
            return await self._receive()
        if self.refusal is not None:
            return DISCONNECT
        try:
            async with asyncio.timeout_at(self._deadline):
                message = await self._receive()
        except TimeoutError:
            return self._refuse(TOO_SLOW)
        if message["type"] != "http.request":
            return message
        self._received += len(message.get("body", b""))
        if self._max_bytes is not None and self._received > self._max_bytes:
            return self._refuse(TOO_LARGE)
        self._complete = not message.get("more_body", False)
        return message

    def _refuse(self, answer: tuple[int, str]) -> Message:
        self.refusal = answer
        return DISCONNECT


async def _answer(scope: Scope, send: Send, answer: tuple[int, str]) -> None:
    status, detail = answer
    # The path is the client's choice: quote a bounded, escaped part of it.
    logger.warning("%s %s: %d %s", scope["method"], ascii(scope["path"][:200]), status, detail)
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def with_body_limit(app: ASGIApp, *, max_bytes: int | None, timeout: float) -> ASGIApp:
    """Wrap ``app`` so HTTP request bodies stay under ``max_bytes`` and arrive within ``timeout`` s.

    ``max_bytes`` None means no size limit (Django's DATA_UPLOAD_MAX_MEMORY_SIZE = None).
    """

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if max_bytes is not None and declared is not None and declared > max_bytes:
            await _answer(scope, send, TOO_LARGE)
            return
        body = _BoundedBody(receive, max_bytes, timeout)
        await app(scope, body, send)
        if body.refusal is not None:
            # The app saw a disconnect while reading the body, so it sent nothing.
            await _answer(scope, send, body.refusal)

    return application
