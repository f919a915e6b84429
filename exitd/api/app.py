"""The aiohttp application: middlewares (errors outermost, then auth, then a standby's refusal of writes)
and one route module per tag."""

from __future__ import annotations

from aiohttp import web

from exitd.api import bitcoin, docs, exits, fees, metrics, onchain, unsupported, wallet
from exitd.api.auth import OPEN_PATHS, auth_middleware
from exitd.api.context import SERVICES, Services, services_of
from exitd.api.errors import Handler, error_middleware
from exitd.api.openapi import READ_METHODS
from exitd.config import Config
from exitd.store.errors import NotLeader


async def ping(_request: web.Request) -> web.Response:
    return web.Response(text="pong")


def open_paths(config: Config) -> frozenset[str]:
    """Paths served without the token: barkd's open ones, and /metrics when `rest.metrics_open` is set."""
    return OPEN_PATHS | {metrics.METRICS_PATH} if config.rest.metrics_open else OPEN_PATHS


@web.middleware
async def standby_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A standby (several exitd on one PostgreSQL database) answers reads from the shared database and
    refuses writes with 503, naming the leader that takes them."""
    store = services_of(request).store
    served = request.match_info.handler is not unsupported.not_served  # barkd's own: 501 whoever asks
    if request.method not in READ_METHODS and served and not store.is_leader:
        raise NotLeader(f"this exitd is a standby and serves reads only; {store.leader}")
    return await handler(request)


def create_app(services: Services, auth_secret: bytes) -> web.Application:
    app = web.Application(
        middlewares=[
            error_middleware,
            auth_middleware(auth_secret, open_paths(services.config)),
            standby_middleware,
        ],
        client_max_size=services.config.rest.max_body_bytes,
    )
    app[SERVICES] = services
    app.router.add_get("/ping", ping)
    for module in (bitcoin, exits, fees, onchain, wallet, metrics, docs):
        module.add_routes(app)
    unsupported.add_routes(app)  # last: what barkd defines and nothing above serves
    return app
