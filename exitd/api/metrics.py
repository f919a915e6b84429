"""GET /metrics: Prometheus' view of the daemon (prometheus.py reads the counters)."""

from __future__ import annotations

import logging

from aiohttp import web

from exitd.api.context import services_of
from exitd.api.prometheus import CONTENT_TYPE, build_info, engine_metrics, render, rpc_metrics, wallet_balance
from exitd.chain.rpc import RpcError
from exitd.log import event, get_logger
from exitd.wallet.errors import NoWallet

log = get_logger("api.metrics")

METRICS_PATH = "/metrics"


async def metrics(request: web.Request) -> web.Response:
    """Every family; the wallet balance (the one that asks bitcoind) is left out while it cannot be read,
    so a node outage shows as missing balance and rising RPC failures, not as a failed scrape."""
    services = services_of(request)
    families = [
        build_info(services.config.network),
        *engine_metrics(services.engine),
        *rpc_metrics(services.rpc),
    ]
    try:
        families.append(wallet_balance(await services.wallet.balance()))
    except (RpcError, NoWallet) as e:
        event(log, logging.DEBUG, "metrics_without_balance", error=str(e))
    return web.Response(body=render(families).encode(), headers={"Content-Type": CONTENT_TYPE})


def add_routes(app: web.Application) -> None:
    app.router.add_get(METRICS_PATH, metrics)
