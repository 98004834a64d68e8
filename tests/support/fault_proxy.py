"""A TCP proxy between the service and a real server that a test can break on demand.

It forwards bytes both ways on its own event loop, in a thread. ``drop()`` closes
every connection through it at once (as a server restart or a killed backend
does); ``refuse()`` closes the listening socket, so new connections are refused
until ``restore()`` listens again on the same port; ``stall()`` keeps accepting
but stops forwarding (a server that vanished without closing anything).
"""

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, Self

from tests.support.ports import free_port

CHUNK = 64 * 1024


class FaultProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.connections_made = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._stalled = False

    # -- control, from the test's thread ---------------------------------------

    def start(self) -> Self:
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        self._call(self._close(drop=True))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def drop(self) -> None:
        """Close every open connection (both ends); keep listening."""
        self._call(self._drop())

    def refuse(self) -> None:
        """Close every connection and stop listening: new connections are refused."""
        self._call(self._close(drop=True))

    def stall(self) -> None:
        """Accept connections, forward nothing: every call waits on its socket."""
        self._stalled = True

    def restore(self) -> None:
        """Forward again and listen again (after ``refuse`` or ``stall``)."""
        self._stalled = False
        self._call(self._listen())

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    # -- on the proxy's loop ----------------------------------------------------

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._serve, "127.0.0.1", self.port, reuse_address=True
            )

    async def _close(self, *, drop: bool) -> None:
        if drop:
            await self._drop()
        if self._server is not None:
            self._server.close()
            # Since Python 3.12 this also waits for the connections it accepted.
            await self._server.wait_closed()
            self._server = None

    async def _drop(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()  # RST, not a polite FIN: as a dead server looks.
        self._writers.clear()

    async def _serve(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        self.connections_made += 1
        self._writers.add(client)
        try:
            server_reader, server = await asyncio.open_connection(*self.target)
        except OSError:
            client.transport.abort()
            self._writers.discard(client)
            return
        self._writers.add(server)
        await asyncio.gather(self._pipe(client_reader, server), self._pipe(server_reader, client))
        for writer in (client, server):
            self._writers.discard(writer)
            writer.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(CHUNK):
                while self._stalled:
                    await asyncio.sleep(0.05)
                if writer.transport.is_closing():
                    return
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
