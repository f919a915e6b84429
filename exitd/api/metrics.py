"""GET /metrics: Prometheus' view of the daemon (prometheus.py reads the counters)."""

from __future__ import annotations

import logging

from aiohttp import web

from exitd.api.context import Services, services_of
from exitd.api.prometheus import CONTENT_TYPE, ExitdCollector, NodeReading, exposition
from exitd.chain.rpc import NO_RETRY, RpcError
from exitd.log import event, get_logger
from exitd.wallet.errors import NoWallet

log = get_logger("api.metrics")

METRICS_PATH = "/metrics"
NODE_READING = web.AppKey("node_reading", NodeReading)


async def read_node(services: Services, node: NodeReading) -> None:
    """Ask bitcoind what only it knows, once per scrape; what it cannot answer keeps its last value, so an
    outage shows as exitd_node_up 0 and a still balance, not as a failed scrape or missing series."""
    try:
        info = await services.rpc.call("getblockchaininfo", retry=NO_RETRY)
    except RpcError as e:
        node.up = False
        event(log, logging.DEBUG, "metrics_node_unavailable", error=str(e))
        return
    node.up = True
    node.height = int(info["blocks"])
    node.block_time = int(info["time"])
    try:
        node.balance = await services.wallet.balance()
    except (RpcError, NoWallet) as e:
        event(log, logging.DEBUG, "metrics_balance_kept", error=str(e))


async def metrics(request: web.Request) -> web.Response:
    services = services_of(request)
    node = request.app[NODE_READING]
    await read_node(services, node)
    collector = ExitdCollector(services.engine, services.rpc, services.alerts, services.config.network, node)
    return web.Response(body=exposition(collector), headers={"Content-Type": CONTENT_TYPE})


def add_routes(app: web.Application) -> None:
    app[NODE_READING] = NodeReading()
    app.router.add_get(METRICS_PATH, metrics)
