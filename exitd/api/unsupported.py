"""barkd operations exitd does not serve: every operation of barkd's documents (0.1.4 and 0.6.0) that has no
route of exitd's own answers 501, so a barkd client learns at once that this daemon only exits (a 404 would
read as a wrong URL). One rule for both versions: boarding, payments, rounds, refreshes, barkd's history,
mnemonic and message signing alike."""

from __future__ import annotations

from aiohttp import web

from exitd.api.errors import NotImplementedByExitd
from exitd.api.shapes import VOCABULARIES, contract

HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch"})


async def not_served(request: web.Request) -> web.StreamResponse:
    raise NotImplementedByExitd(
        f"{request.method} {request.path} is barkd's: exitd only performs unilateral exits "
        "(use barkd for boarding, payments, rounds, refreshes and the rest of an Ark wallet)"
    )


def barkd_operations() -> set[tuple[str, str]]:
    """(METHOD, path template) of every operation either barkd document defines."""
    return {
        (method.upper(), path)
        for version in VOCABULARIES
        for path, operations in contract(version)["paths"].items()
        for method in operations
        if method in HTTP_METHODS
    }


def add_routes(app: web.Application) -> None:
    """Added after every module that serves barkd's operations: the rest of barkd's answer 501."""
    served = {(route.method, route.resource.canonical) for route in app.router.routes() if route.resource}
    for method, path in sorted(barkd_operations() - served):
        app.router.add_route(method, path, not_served)
