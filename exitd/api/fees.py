"""barkd's `fees` tag (the parts that need no Ark server)."""

from __future__ import annotations

from aiohttp import web

from exitd.api.context import services_of
from exitd.api.errors import json_response
from exitd.chain.fees import sat_per_vb_ceil


async def onchain_fee_rates(request: web.Request) -> web.Response:
    rates = await services_of(request).fees.rates()
    return json_response(
        {
            "fast_sat_per_vb": sat_per_vb_ceil(rates.fast),
            "regular_sat_per_vb": sat_per_vb_ceil(rates.regular),
            "slow_sat_per_vb": sat_per_vb_ceil(rates.slow),
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/fees/onchain", onchain_fee_rates)
