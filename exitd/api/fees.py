"""barkd's `fees` tag (the parts that need no Ark server)."""

from __future__ import annotations

from aiohttp import web

from exitd.api.context import services_of
from exitd.api.errors import BadRequest, json_response
from exitd.api.onchain import sat_amount, whole_number
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


async def send_onchain_fee(request: web.Request) -> web.Response:
    """What sending `amount_sat` to `address` from the on-chain wallet costs now (exitd has no Ark balance to
    send from, so no VTXO is ever spent)."""
    amount_text, address = request.query.get("amount_sat"), request.query.get("address")
    if not amount_text or not address:
        raise BadRequest("query parameters 'amount_sat' and 'address' are required")
    amount = sat_amount(whole_number(amount_text, "query parameter 'amount_sat'"), "amount_sat")
    fee = await services_of(request).wallet.send_fee(address, amount)
    return json_response(
        {"gross_amount_sat": amount + fee, "fee_sat": fee, "net_amount_sat": amount, "vtxos_spent": []}
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/fees/onchain", onchain_fee_rates)
    app.router.add_get("/api/v1/fees/send-onchain", send_onchain_fee)
