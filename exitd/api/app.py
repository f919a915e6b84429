"""The aiohttp application: middlewares (errors outermost, then auth) and one route module per tag."""

from __future__ import annotations

from aiohttp import web

from exitd.api import bitcoin, docs, exits, fees, metrics, onchain, unsupported, wallet
from exitd.api.auth import OPEN_PATHS, auth_middleware
from exitd.api.context import SERVICES, Services
from exitd.api.errors import error_middleware
from exitd.config import Config


async def ping(_request: web.Request) -> web.Response:
    return web.Response(text="pong")


def open_paths(config: Config) -> frozenset[str]:
    """Paths served without the token: barkd's open ones, and /metrics when `rest.metrics_open` is set."""
    return OPEN_PATHS | {metrics.METRICS_PATH} if config.rest.metrics_open else OPEN_PATHS


def create_app(services: Services, auth_secret: bytes) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware, auth_middleware(auth_secret, open_paths(services.config))],
        client_max_size=services.config.rest.max_body_bytes,
    )
    app[SERVICES] = services
    app.router.add_get("/ping", ping)
    for module in (bitcoin, exits, fees, onchain, wallet, unsupported, metrics, docs):
        module.add_routes(app)
    return app
