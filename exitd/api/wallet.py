"""barkd's `wallet` tag: creating the wallet, importing and reading VTXOs, their balance."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from exitd.api.context import services_of
from exitd.api.errors import BadRequest, json_response, read_json_object
from exitd.api.onchain import onchain_sync
from exitd.api.shapes import vtxo_info_json

# barkd's BarkNetwork names (and exitd's "testnet", which bark lacks) -> exitd's network names.
BARK_NETWORKS = {
    "mainnet": "mainnet",
    "signet": "signet",
    "mutinynet": "signet",
    "regtest": "regtest",
    "testnet": "testnet",
}


def parse_bool_query(request: web.Request, name: str) -> bool:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return False
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise BadRequest(f"query parameter '{name}' must be true or false, got {raw[:40]!r}")


def parse_bool_field(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise BadRequest(f"field '{name}' must be true or false")
    return value


# How many blocks an import may name as holding spent chain anchors.
MAX_ANCHOR_BLOCKS = 16
_BLOCK_HASH = re.compile("[0-9a-fA-F]{64}")


def parse_anchor_blocks(body: dict[str, Any]) -> list[str | int]:
    """exitd's extra import field: the blocks (hash or height) holding the txs of spent chain anchors."""
    value = body.get("anchor_blocks", [])
    if not isinstance(value, list) or len(value) > MAX_ANCHOR_BLOCKS:
        raise BadRequest(f"field 'anchor_blocks' must be a list of at most {MAX_ANCHOR_BLOCKS} blocks")
    blocks: list[str | int] = []
    for i, block in enumerate(value):
        if isinstance(block, int) and not isinstance(block, bool) and 0 <= block < 2**31:
            blocks.append(block)
        elif isinstance(block, str) and _BLOCK_HASH.fullmatch(block):
            blocks.append(block.lower())
        else:
            raise BadRequest(
                f"anchor_blocks[{i}]: expected a block hash (64 hex digits) or a height (integer), "
                f"got {str(block)[:80]!r}"
            )
    return blocks


async def import_vtxo(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    vtxos = body.get("vtxos")
    if not isinstance(vtxos, list):
        raise BadRequest("field 'vtxos' must be a list of hex-encoded VTXOs")
    protect = parse_bool_field(body, "protect")
    anchor_blocks = parse_anchor_blocks(body)
    rows = await services_of(request).vtxos.import_vtxos(vtxos, protect, anchor_blocks)
    return json_response([vtxo_info_json(row) for row in rows])


async def list_vtxos(request: web.Request) -> web.Response:
    rows = await services_of(request).vtxos.list(include_spent=parse_bool_query(request, "all"))
    return json_response([vtxo_info_json(row) for row in rows])


async def get_vtxo(request: web.Request) -> web.Response:
    row = await services_of(request).vtxos.get(request.match_info["id"])
    return json_response(vtxo_info_json(row))


async def get_vtxo_encoded(request: web.Request) -> web.Response:
    row = await services_of(request).vtxos.get(request.match_info["id"])
    return json_response({"encoded": row.encoded.hex()})


async def mark_vtxo_gone(request: web.Request) -> web.Response:
    """exitd's own: the user says the VTXO is no longer theirs; nothing exits it from now on."""
    row = await services_of(request).vtxos.mark_gone(request.match_info["id"])
    return json_response(vtxo_info_json(row))


async def vtxo_source(request: web.Request) -> web.Response:
    """exitd's own: where VTXOs come from (the followed barkd, or imports only) and the last sync."""
    follower = services_of(request).source
    if follower is None:
        return json_response({"kind": "import"})
    status = follower.status
    return json_response(
        {
            "kind": "barkd",
            "url": status.url,
            "last_sync_at": status.last_sync_at,
            "last_attempt_at": status.last_attempt_at,
            "error": status.error,
            "listed": status.listed,
            "notifications": status.notifications,
        }
    )


async def wallet_exists(request: web.Request) -> web.Response:
    return json_response({"fingerprint": services_of(request).wallet.fingerprint})


async def create_wallet(request: web.Request) -> web.Response:
    """barkd's CreateWalletRequest: `network`, optional `mnemonic` and `birthday_height`; the Ark server and
    chain source fields are accepted and ignored (exitd has no Ark server and its node is configured)."""
    services = services_of(request)
    body = await read_json_object(request)
    network = body.get("network")
    if not isinstance(network, str) or network not in BARK_NETWORKS:
        raise BadRequest(f"field 'network' must be one of {', '.join(BARK_NETWORKS)}")
    if BARK_NETWORKS[network] != services.config.network:
        raise BadRequest(f"this exitd runs on {services.config.network}, not {network}")
    mnemonic = body.get("mnemonic")
    if mnemonic is not None and not isinstance(mnemonic, str):
        raise BadRequest("field 'mnemonic' must be a string of BIP39 words or null")
    birthday = body.get("birthday_height")
    if birthday is not None and (isinstance(birthday, bool) or not isinstance(birthday, int) or birthday < 0):
        raise BadRequest("field 'birthday_height' must be a block height or null")
    fingerprint = await services.wallet.create(mnemonic, birthday)
    return json_response({"fingerprint": fingerprint})


async def balance(request: web.Request) -> web.Response:
    """barkd's Balance from the VTXOs exitd holds: spendable ones, and those locked in an exit."""
    amounts = await services_of(request).vtxos.amounts_by_state()
    return json_response(
        {
            "spendable_sat": amounts.get("spendable", 0),
            "pending_lightning_send_sat": 0,
            "claimable_lightning_receive_sat": 0,
            "pending_in_round_sat": 0,
            "pending_board_sat": 0,
            "pending_exit_sat": amounts.get("locked", 0),
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/wallet", wallet_exists)
    app.router.add_post("/api/v1/wallet/create", create_wallet)
    app.router.add_get("/api/v1/wallet/balance", balance)
    # barkd's wallet sync: exitd's one wallet is the on-chain one (exits follow the chain every block).
    app.router.add_post("/api/v1/wallet/sync", onchain_sync)
    app.router.add_post("/api/v1/wallet/import-vtxo", import_vtxo)
    app.router.add_get("/api/v1/wallet/vtxos", list_vtxos)
    app.router.add_get("/api/v1/wallet/vtxos/{id}", get_vtxo)
    app.router.add_get("/api/v1/wallet/vtxos/{id}/encoded", get_vtxo_encoded)
    app.router.add_post("/api/v1/wallet/vtxos/{id}/gone", mark_vtxo_gone)
    app.router.add_get("/api/v1/wallet/source", vtxo_source)
