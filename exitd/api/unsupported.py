"""barkd endpoints that need an Ark server: exitd answers them with 501 so clients learn why at once."""

from __future__ import annotations

from aiohttp import web

from exitd.api.errors import NotImplementedByExitd

# (method, path) of barkd 0.1.4 operations that talk to an Ark server or a Lightning node.
ARK_SERVER_ROUTES: tuple[tuple[str, str], ...] = (
    ("POST", "/api/v1/boards/board-all"),
    ("POST", "/api/v1/boards/board-amount"),
    ("GET", "/api/v1/boards/pending"),
    ("GET", "/api/v1/fees/board"),
    ("GET", "/api/v1/fees/lightning/pay"),
    ("GET", "/api/v1/fees/lightning/receive"),
    ("GET", "/api/v1/fees/offboard-all"),
    ("POST", "/api/v1/lightning/pay"),
    ("GET", "/api/v1/lightning/receives"),
    ("POST", "/api/v1/lightning/receives/invoice"),
    ("GET", "/api/v1/lightning/receives/{identifier}"),
    ("DELETE", "/api/v1/lightning/receives/{identifier}"),
    ("GET", "/api/v1/notifications/ws/ticket"),
    ("GET", "/api/v1/wallet/addresses/index/{index}"),
    ("POST", "/api/v1/wallet/addresses/next"),
    ("GET", "/api/v1/wallet/ark-info"),
    ("GET", "/api/v1/wallet/connected"),
    ("GET", "/api/v1/wallet/history"),
    ("GET", "/api/v1/wallet/movements"),
    ("GET", "/api/v1/wallet/next-round"),
    ("POST", "/api/v1/wallet/offboard/all"),
    ("POST", "/api/v1/wallet/offboard/vtxos"),
    ("POST", "/api/v1/wallet/refresh/all"),
    ("POST", "/api/v1/wallet/refresh/counterparty"),
    ("POST", "/api/v1/wallet/refresh/vtxos"),
    ("GET", "/api/v1/wallet/rounds"),
    ("POST", "/api/v1/wallet/send"),
    ("POST", "/api/v1/wallet/send-onchain"),
    ("POST", "/api/v1/wallet/sync/mailbox"),
    ("DELETE", "/api/v1/wallet"),
)


async def not_served(request: web.Request) -> web.StreamResponse:
    raise NotImplementedByExitd(
        f"{request.method} {request.path} needs an Ark server; exitd only performs unilateral exits "
        "(use barkd for boarding, payments, rounds and refreshes)"
    )


def add_routes(app: web.Application) -> None:
    for method, path in ARK_SERVER_ROUTES:
        app.router.add_route(method, path, not_served)
