"""A TCP forwarder on 127.0.0.1 that a test cuts like a network between a daemon and its database.

`blackhole()` is a cable pulled: nothing more goes through either way, and nothing is closed (no FIN, no
RST: each end's socket stays open, as across a dead link; new connections are accepted and hang).
`close()` is a link that resets: every connection is closed at once and new ones are closed as they come.
`restore()` forwards again; what waited on a blackholed connection then goes through, as TCP's
retransmissions deliver it when a link comes back.

It runs on an event loop of a thread of its own, so a synchronous test drives it between its requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
from collections.abc import Coroutine
from typing import Any

from exitd.regtest.node import free_port


class Link(enum.Enum):
    UP = "up"
    BLACKHOLE = "blackhole"
    CLOSED = "closed"


class TcpProxy:
    """127.0.0.1:`port` forwarded to 127.0.0.1:`target`."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.link = Link.UP
        self.connections = 0  # accepted so far
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._thread.start()
        self._up = asyncio.Event()  # set while the link is UP; bound to the proxy's loop at first use
        self._writers: set[asyncio.StreamWriter] = set()
        self._server = self._call(asyncio.start_server(self._accept, "127.0.0.1", self.port))
        self._call(self._set(Link.UP))

    def _call(self, work: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout=10)

    def blackhole(self) -> None:
        self._call(self._set(Link.BLACKHOLE))

    def close(self) -> None:
        self._call(self._set(Link.CLOSED))

    def restore(self) -> None:
        self._call(self._set(Link.UP))

    def stop(self) -> None:
        self._call(self._set(Link.CLOSED))
        self._server.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _set(self, link: Link) -> None:
        self.link = link
        if link is Link.UP:
            self._up.set()
            return
        self._up.clear()
        if link is Link.CLOSED:
            for writer in list(self._writers):
                writer.transport.abort()
            self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.link is Link.CLOSED:
            writer.transport.abort()
            return
        self._writers.add(writer)
        await self._up.wait()  # a connection made across a pulled cable hangs
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Forward one direction while the link is up; hold what arrives while it is not (its end too)."""
        with contextlib.suppress(OSError):
            while True:
                data = await reader.read(65536)
                await self._up.wait()
                if not data or writer.transport.is_closing():
                    break
                writer.write(data)
                await writer.drain()
        writer.transport.abort() if self.link is Link.CLOSED else writer.close()
        self._writers.discard(writer)
