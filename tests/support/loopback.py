"""An aiohttp server on loopback, served from a thread of its own so a synchronous test can drive it."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web

from exitd.regtest.node import free_port


class LoopbackServer:
    """Subclasses give the app (`make_app`); start() serves it on 127.0.0.1:`port`, stop() takes it down
    (connections are refused from then on, as from a process that went away)."""

    def __init__(self) -> None:
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def make_app(self) -> web.Application:
        raise NotImplementedError

    async def _serve(self) -> None:
        # A stop does not wait for a request in flight (a long poll): the server going away cuts it off.
        self._runner = web.AppRunner(self.make_app(), shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
            self._runner = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
