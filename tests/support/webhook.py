"""A webhook endpoint on loopback that keeps every alert body exitd POSTs to it."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.support.loopback import LoopbackServer


class WebhookReceiver(LoopbackServer):
    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/exitd-alerts"

    def events(self, vtxo_id: str) -> list[str]:
        return [body["event"] for body in list(self.bodies) if body.get("vtxo") == vtxo_id]

    async def _receive(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        return web.Response(status=204)

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/exitd-alerts", self._receive)
        return app
