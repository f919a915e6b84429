"""barkd's `onchain` tag: the on-chain wallet, which pays the CPFP fees of exits and receives claims."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from exitd.api.context import services_of
from exitd.api.errors import BadRequest, json_response, read_json_object
from exitd.api.shapes import V060, wallet_tx_json
from exitd.chain.fees import SATS_PER_BTC, btc_to_sat

# No amount can exceed the 21 million bitcoin there will ever be (Core's MAX_MONEY).
MAX_MONEY = 21_000_000 * SATS_PER_BTC
# rust-bitcoin's Amount::from_str forms barkd accepts in "address:amount", e.g. "1000 sat", "0.001btc";
# a bare integer is taken as sat.
_AMOUNT = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>btc|sats?|satoshis?)?", re.IGNORECASE)


def sat_amount(value: Any, what: str) -> int:
    """A JSON amount in sat: a whole number in [0, MAX_MONEY]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{what} must be a whole number of sat, got {str(value)[:40]!r}")
    if not 0 <= value <= MAX_MONEY:
        raise BadRequest(f"{what} must be between 0 and {MAX_MONEY} sat, got {value}")
    return value


def whole_number(text: str, what: str) -> int:
    """A whole number written in a query string: ASCII digits only (str.isdigit also takes '²', which int()
    refuses) and at most 20 of them (int() refuses over 4300, and no amount or rate has more than 20)."""
    if not (text.isascii() and text.isdigit()) or len(text) > 20:
        raise BadRequest(f"{what} must be a whole number, got {text[:40]!r}")
    return int(text)


def parse_amount(text: str, what: str) -> int:
    """An amount written as rust-bitcoin writes one ("1000 sat", "0.001 BTC"), or a bare number of sat."""
    match = _AMOUNT.fullmatch(text.strip())
    if match is None:
        raise BadRequest(f"{what}: invalid amount {text[:40]!r}; expected e.g. '1000 sat' or '0.00001 btc'")
    unit = (match["unit"] or "sat").lower()
    try:
        sats = btc_to_sat(Decimal(match["number"])) if unit == "btc" else int(match["number"])
    except (ValueError, InvalidOperation):
        raise BadRequest(f"{what}: {text[:40]!r} is not a whole number of sat") from None
    return sat_amount(sats, what)


def string_field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"field '{name}' must be a non-empty string")
    return value


def parse_destination(text: Any, index: int) -> tuple[str, int]:
    """barkd's send-many destination "address:amount"."""
    what = f"destinations[{index}]"
    if not isinstance(text, str) or ":" not in text:
        raise BadRequest(f"{what}: invalid destination format, expected address:amount")
    address, amount = text.split(":", 1)
    return address.strip(), parse_amount(amount, what)


async def onchain_balance(request: web.Request) -> web.Response:
    balance = await services_of(request).wallet.balance()
    return json_response(
        {
            "confirmed_sat": balance.confirmed,
            "immature_sat": balance.immature,
            "total_sat": balance.total,
            "trusted_pending_sat": balance.trusted_pending,
            "trusted_spendable_sat": balance.trusted_spendable,
            "untrusted_pending_sat": balance.untrusted_pending,
        }
    )


async def onchain_address(request: web.Request) -> web.Response:
    return json_response({"address": await services_of(request).wallet.next_address()})


async def onchain_send(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    destination = string_field(body, "destination")
    amount = sat_amount(body.get("amount_sat"), "amount_sat")
    return json_response({"txid": await services_of(request).wallet.send(destination, amount)})


async def onchain_send_many(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    destinations = body.get("destinations")
    if not isinstance(destinations, list) or not destinations:
        raise BadRequest("field 'destinations' must be a non-empty list of \"address:amount\" strings")
    payments = [parse_destination(text, i) for i, text in enumerate(destinations)]
    return json_response({"txid": await services_of(request).wallet.send_many(payments)})


async def onchain_drain(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    destination = string_field(body, "destination")
    return json_response({"txid": await services_of(request).wallet.drain(destination)})


async def onchain_utxos(request: web.Request) -> web.Response:
    coins = await services_of(request).wallet.list_unspent()
    return json_response(
        [
            {"outpoint": str(coin.outpoint), "amount_sat": coin.value, "confirmation_height": coin.height}
            for coin in coins
        ]
    )


async def onchain_transactions(request: web.Request) -> web.Response:
    """0.1.4's TransactionInfo; in the 0.6.0 vocabulary WalletTxInfo, with what each did to the balance."""
    services = services_of(request)
    txs = await services.wallet.list_transactions()
    if services.config.api_vocabulary == V060:
        return json_response([wallet_tx_json(tx) for tx in txs])
    return json_response([{"txid": tx.txid, "tx": tx.raw.hex()} for tx in txs])


async def onchain_sync(request: web.Request) -> web.Response:
    await services_of(request).wallet.sync()
    return web.Response(status=200)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/onchain/balance", onchain_balance)
    app.router.add_post("/api/v1/onchain/addresses/next", onchain_address)
    app.router.add_post("/api/v1/onchain/send", onchain_send)
    app.router.add_post("/api/v1/onchain/send-many", onchain_send_many)
    app.router.add_post("/api/v1/onchain/drain", onchain_drain)
    app.router.add_get("/api/v1/onchain/utxos", onchain_utxos)
    app.router.add_get("/api/v1/onchain/transactions", onchain_transactions)
    app.router.add_post("/api/v1/onchain/sync", onchain_sync)
