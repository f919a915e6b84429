"""GET /metrics: Prometheus' view of the daemon (exitd/metrics.py reads the counters)."""

from __future__ import annotations

from aiohttp import web

from exitd.api.context import services_of
from exitd.metrics import CONTENT_TYPE, build_info, engine_metrics, render, rpc_metrics

METRICS_PATH = "/metrics"


async def metrics(request: web.Request) -> web.Response:
    services = services_of(request)
    families = [
        build_info(services.config.network),
        *engine_metrics(services.engine),
        *rpc_metrics(services.rpc),
    ]
    return web.Response(body=render(families).encode(), headers={"Content-Type": CONTENT_TYPE})


def add_routes(app: web.Application) -> None:
    app.router.add_get(METRICS_PATH, metrics)
