"""barkd's `bitcoin` tag."""

from __future__ import annotations

from aiohttp import web

from exitd.api.context import services_of
from exitd.api.errors import json_response


async def tip(request: web.Request) -> web.Response:
    height = await services_of(request).rpc.call("getblockcount")
    return json_response({"tip_height": int(height)})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/bitcoin/tip", tip)
