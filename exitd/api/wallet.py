"""barkd's `wallet` tag: importing and reading VTXOs."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from exitd.api.context import services_of
from exitd.api.errors import BadRequest, json_response, read_json_object
from exitd.store.models import VtxoRow


def parse_bool_query(request: web.Request, name: str) -> bool:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return False
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise BadRequest(f"query parameter '{name}' must be true or false, got {raw[:40]!r}")


def wallet_vtxo_info(row: VtxoRow) -> dict[str, Any]:
    """barkd's WalletVtxoInfo, plus `key_held` (extra: whether this wallet can sign the claim)."""
    return {
        "id": row.vtxo_id,
        "amount_sat": row.amount_sat,
        "policy_type": row.policy_type,
        "user_pubkey": row.user_pubkey,
        "server_pubkey": row.server_pubkey,
        "expiry_height": row.expiry_height,
        "exit_delta": row.exit_delta,
        "chain_anchor": row.chain_anchor,
        "exit_depth": row.exit_depth,
        "state": {"type": row.state},
        "key_held": row.key_index is not None,
    }


async def import_vtxo(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    vtxos = body.get("vtxos")
    if not isinstance(vtxos, list):
        raise BadRequest("field 'vtxos' must be a list of hex-encoded VTXOs")
    rows = await services_of(request).vtxos.import_vtxos(vtxos)
    return json_response([wallet_vtxo_info(row) for row in rows])


async def list_vtxos(request: web.Request) -> web.Response:
    rows = await services_of(request).vtxos.list(include_spent=parse_bool_query(request, "all"))
    return json_response([wallet_vtxo_info(row) for row in rows])


async def get_vtxo(request: web.Request) -> web.Response:
    row = await services_of(request).vtxos.get(request.match_info["id"])
    return json_response(wallet_vtxo_info(row))


async def get_vtxo_encoded(request: web.Request) -> web.Response:
    row = await services_of(request).vtxos.get(request.match_info["id"])
    return json_response({"encoded": row.encoded.hex()})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/wallet/import-vtxo", import_vtxo)
    app.router.add_get("/api/v1/wallet/vtxos", list_vtxos)
    app.router.add_get("/api/v1/wallet/vtxos/{id}", get_vtxo)
    app.router.add_get("/api/v1/wallet/vtxos/{id}/encoded", get_vtxo_encoded)
