"""The aiohttp application: middlewares (errors outermost, then auth) and one route module per tag."""

from __future__ import annotations

from aiohttp import web

from exitd.api import bitcoin, fees, unsupported, wallet
from exitd.api.auth import auth_middleware
from exitd.api.context import SERVICES, Services
from exitd.api.errors import error_middleware


async def ping(_request: web.Request) -> web.Response:
    return web.Response(text="pong")


def create_app(services: Services, auth_secret: bytes) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware, auth_middleware(auth_secret)],
        client_max_size=services.config.rest.max_body_bytes,
    )
    app[SERVICES] = services
    app.router.add_get("/ping", ping)
    for module in (bitcoin, fees, wallet, unsupported):
        module.add_routes(app)
    return app
