"""Call an ASGI application directly, playing the server's side of one request.

The test client cannot send some requests (one Host header of the caller's
choice, a body that stops arriving), and cannot count how much of a body
the application read; this can.
"""

import asyncio
import json
from typing import Any

from asgi_project.body_limit import ASGIApp, Message


class ScriptedClient:
    """One request's server side: the body in the given chunks, then silence."""

    def __init__(self, chunks: list[bytes], *, finished: bool = True) -> None:
        self.chunks = list(chunks)
        self.finished = finished
        self.pulled = 0
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        if not self.chunks:
            # The body is over (Django now listens for a disconnect) or the
            # client went silent: a server waits, and so does this.
            await asyncio.Event().wait()
        self.pulled += 1
        chunk = self.chunks.pop(0)
        more = bool(self.chunks) or not self.finished
        return {"type": "http.request", "body": chunk, "more_body": more}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        (start,) = [m for m in self.sent if m["type"] == "http.response.start"]
        return int(start["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        (start,) = [m for m in self.sent if m["type"] == "http.response.start"]
        return {name.lower(): value for name, value in start["headers"]}

    @property
    def content(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")

    def json(self) -> Any:
        return json.loads(self.content)


def http_scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }


async def call(
    app: ASGIApp,
    client: ScriptedClient,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
) -> ScriptedClient:
    async with asyncio.timeout(10):  # A broken limit must fail the test, not hang it.
        await app(http_scope(method, path, headers), client.receive, client.send)
    return client
