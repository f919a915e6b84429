"""barkd's `bitcoin` tag."""

from __future__ import annotations

from aiohttp import web

from exitd.api.context import services_of
from exitd.api.errors import json_response
from exitd.chain.node import lacks, read_node


async def tip(request: web.Request) -> web.Response:
    height = await services_of(request).rpc.call("getblockcount")
    return json_response({"tip_height": int(height)})


async def node(request: web.Request) -> web.Response:
    """The tip's companion: what exitd needs of the node and found, how far it has read the blocks, and
    anything that keeps exits from progressing."""
    services = services_of(request)
    info = await read_node(services.rpc)
    view = services.engine.view
    problems = lacks(info, services.config.network)
    gap = view.blocked or await view.locator.pruned_gap(info.prune_height)
    if gap is not None:
        problems.append(str(gap))
    read = view.locator.processed
    return json_response(
        {
            **info.summary(),
            "blocks_read_to": {"height": read.height, "hash": read.hash} if read else None,
            "problems": problems,
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/bitcoin/tip", tip)
    app.router.add_get("/api/v1/bitcoin/node", node)
