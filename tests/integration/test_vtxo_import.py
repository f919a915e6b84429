"""Importing bark's own VTXO vectors over REST and reading them back; the chain anchor of a forged VTXO
checked on every kind of node, spent or not, with and without the block holding it."""

from dataclasses import replace

import pytest

from exitd.ark.exit_tx import build_exit_chain
from exitd.ark.vtxo import decode_vtxo
from exitd.regtest.forge import Forge, ForgedVtxo
from exitd.regtest.node import NodeFlavor, RegtestNode
from tests.conftest import EVERY_NODE
from tests.support.daemon import DaemonProcess
from tests.support.exits import anchor_block, broadcast_with_child, minted, spend_anchors
from tests.support.vectors import V1_VECTORS, V2_VECTORS

pytestmark = pytest.mark.bitcoind

IMPORT = "/api/v1/wallet/import-vtxo"


def test_import_v2_vectors_lists_their_fields(daemon: DaemonProcess) -> None:
    status, imported = daemon.request(
        "POST", "/api/v1/wallet/import-vtxo", {"vtxos": [v.data.hex() for v in V2_VECTORS]}
    )
    assert status == 200, imported
    assert len(imported) == len(V2_VECTORS)
    for info, vec in zip(imported, V2_VECTORS, strict=True):
        derived = vec.derived
        vtxo = decode_vtxo(vec.data)
        assert info["id"] == derived["vtxo_id"] == str(vtxo.id)
        assert info["amount_sat"] == vtxo.amount
        assert info["exit_depth"] == vec.exit_depth
        assert info["expiry_height"] == 101010 and info["exit_delta"] == 2016
        assert info["policy_type"] == vtxo.policy.kind
        assert info["chain_anchor"] == str(vtxo.anchor_point)
        assert info["state"] == {"type": "spendable"}
        assert info["key_held"] is False  # the vectors' keys are not this wallet's
    status, listed = daemon.request("GET", "/api/v1/wallet/vtxos")
    assert status == 200 and {i["id"] for i in listed} == {i["id"] for i in imported}
    one = imported[0]
    assert daemon.request("GET", f"/api/v1/wallet/vtxos/{one['id']}") == (200, one)
    status, body = daemon.request("GET", f"/api/v1/wallet/vtxos/{one['id']}/encoded")
    assert status == 200 and body == {"encoded": V2_VECTORS[0].data.hex()}


def test_reimport_is_idempotent(daemon: DaemonProcess) -> None:
    body = {"vtxos": [V2_VECTORS[0].data.hex()]}
    first = daemon.request("POST", "/api/v1/wallet/import-vtxo", body)
    second = daemon.request("POST", "/api/v1/wallet/import-vtxo", body)
    assert first == second and first[0] == 200
    assert len(daemon.request("GET", "/api/v1/wallet/vtxos")[1]) == 1


def test_v1_vectors_come_back_as_v2(daemon: DaemonProcess) -> None:
    status, imported = daemon.request(
        "POST", "/api/v1/wallet/import-vtxo", {"vtxos": [v.data.hex() for v in V1_VECTORS]}
    )
    assert status == 200, imported
    for info, vec in zip(imported, V1_VECTORS, strict=True):
        encoded = daemon.request("GET", f"/api/v1/wallet/vtxos/{info['id']}/encoded")[1]["encoded"]
        assert encoded[:4] == "0200" and encoded != vec.data.hex()
        assert decode_vtxo(bytes.fromhex(encoded)) == decode_vtxo(vec.data)


def test_one_bad_entry_rejects_the_batch(daemon: DaemonProcess) -> None:
    good = V2_VECTORS[0].data.hex()
    truncated = V2_VECTORS[1].data[:-5].hex()
    for bad, why in [("zz", "not valid hex"), (truncated, "vtxos[1]: at byte"), (7, "hex string")]:
        status, body = daemon.request("POST", "/api/v1/wallet/import-vtxo", {"vtxos": [good, bad]})
        assert status == 400 and why in body["message"], body
    assert daemon.request("GET", "/api/v1/wallet/vtxos") == (200, [])


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"", "empty"),
        (b"{not json", "not valid JSON"),
        (b"[1,2]", "JSON object"),
        (b'{"vtxos": "00"}', "list"),
        (b'{"vtxos": []}', "no VTXOs"),
    ],
)
def test_malformed_bodies(daemon: DaemonProcess, raw: bytes, why: str) -> None:
    status, body = daemon.request("POST", "/api/v1/wallet/import-vtxo", raw=raw)
    assert status == 400 and why in body["message"]


def test_oversize_body_is_413(daemon: DaemonProcess) -> None:
    status, body = daemon.request(
        "POST", "/api/v1/wallet/import-vtxo", raw=b'{"vtxos": ["' + b"00" * (1 << 20) + b'"]}'
    )
    assert status == 413 and "too large" in body["message"]


@pytest.mark.parametrize(
    ("vtxo_id", "status"),
    [("nothex:0", 400), ("00" * 32, 400), ("00" * 32 + ":x", 400), ("00" * 32 + ":0", 404)],
)
def test_bad_and_unknown_ids(daemon: DaemonProcess, vtxo_id: str, status: int) -> None:
    got, body = daemon.request("GET", f"/api/v1/wallet/vtxos/{vtxo_id}")
    assert got == status
    if status == 404:
        assert body["resources"] == [vtxo_id] and "not found" in body["message"]


def test_bad_query_flag(daemon: DaemonProcess) -> None:
    status, body = daemon.request("GET", "/api/v1/wallet/vtxos?all=maybe")
    assert status == 400 and "'all'" in body["message"]


@pytest.mark.parametrize("bitcoind", EVERY_NODE, indirect=True)
def test_a_spent_anchor_is_checked_in_the_block_the_import_names(
    daemon: DaemonProcess, bitcoind: RegtestNode
) -> None:
    forge = Forge(bitcoind)
    board, other = forge.board(30_000), forge.board(31_000)
    # The same exit chain pointed at another board's anchor: on chain, that output is not what it spends.
    wrong = ForgedVtxo(forge.sign(replace(board.vtxo, anchor_point=other.vtxo.anchor_point)), board.user)
    board_block, other_block = anchor_block(bitcoind, board), anchor_block(bitcoind, other)
    spent_in = spend_anchors(bitcoind, forge, board, other)
    anchor_txid = board.vtxo.anchor_point.txid_hex

    status, body = daemon.request("POST", IMPORT, {"vtxos": [board.hex]})
    if bitcoind.flavor is NodeFlavor.TXINDEX:
        assert status == 200, body  # the tx index finds the anchor tx
    else:
        assert status == 400, body
        message = body["message"]
        assert message.startswith(f"vtxos[0]: chain anchor {board.vtxo.anchor_point} is not in")
        assert (
            "no tx index" in message
            and f'name the block holding tx {anchor_txid} in the import\'s "anchor_blocks"' in message
        )
        assert daemon.request("GET", "/api/v1/wallet/vtxos") == (200, [])
        status, body = daemon.request("POST", IMPORT, {"vtxos": [board.hex], "anchor_blocks": [spent_in]})
        assert status == 400 and "is in none of the named anchor blocks" in body["message"], body
        assert spent_in in body["message"]

    height = int(bitcoind.rpc("getblockheader", board_block)["height"])
    for named in (board_block, height):
        status, imported = daemon.request("POST", IMPORT, {"vtxos": [board.hex], "anchor_blocks": [named]})
        assert status == 200, imported
        assert [(v["id"], v["chain_anchor"]) for v in imported] == [
            (str(board.id), str(board.vtxo.anchor_point))
        ]
    checked = f"vtxo_anchor_spent vtxo={board.id} anchor={board.vtxo.anchor_point} checked_by="
    imports = 3 if bitcoind.flavor is NodeFlavor.TXINDEX else 2
    assert daemon.log_text().count(checked + '"its tx"') == imports

    status, body = daemon.request("POST", IMPORT, {"vtxos": [wrong.hex], "anchor_blocks": [other_block]})
    assert status == 400, body
    other_anchor = build_exit_chain(other.vtxo).chain_anchor_txout
    assert f"on chain is {other_anchor.value} sat to {other_anchor.script_pubkey.hex()}" in body["message"]
    assert [v["id"] for v in daemon.request("GET", "/api/v1/wallet/vtxos")[1]] == [str(board.id)]


@pytest.mark.parametrize("bitcoind", EVERY_NODE, indirect=True)
def test_an_anchor_spent_by_the_vtxos_own_exit_needs_no_block(
    daemon: DaemonProcess, bitcoind: RegtestNode
) -> None:
    """Someone broadcast the board's exit tx: bitcoind accepted it on the anchor, which proves the anchor,
    even once its block is pruned."""
    forge = Forge(bitcoind)
    board = forge.board(40_000)
    minted(bitcoind)
    (exit_tx,) = [t.tx for t in build_exit_chain(board.vtxo).txs]
    broadcast_with_child(bitcoind, forge, exit_tx)
    status, imported = daemon.request("POST", IMPORT, {"vtxos": [board.hex]})  # in the mempool
    assert status == 200 and imported[0]["id"] == str(board.id), imported
    bitcoind.mine(1)
    status, imported = daemon.request("POST", IMPORT, {"vtxos": [board.hex]})  # in a block
    assert status == 200 and imported[0]["id"] == str(board.id), imported
    checked = f"vtxo_anchor_spent vtxo={board.id} anchor={board.vtxo.anchor_point} checked_by="
    by = '"its tx"' if bitcoind.flavor is NodeFlavor.TXINDEX else '"its exit chain"'  # the index first
    assert daemon.log_text().count(checked + by) == 2


@pytest.mark.parametrize("bitcoind", [NodeFlavor.PRUNED], indirect=True, ids=["pruned"])
def test_a_pruned_anchor_block_is_named_with_how_to_fetch_it(
    daemon: DaemonProcess, bitcoind: RegtestNode
) -> None:
    forge = Forge(bitcoind)
    board = forge.board(30_000)
    block = anchor_block(bitcoind, board)
    spend_anchors(bitcoind, forge, board)
    minted(bitcoind)  # the anchor's block is pruned
    height = int(bitcoind.rpc("getblockheader", block)["height"])
    prune_height = int(bitcoind.rpc("getblockchaininfo")["pruneheight"])
    for named in (block, height):
        status, body = daemon.request("POST", IMPORT, {"vtxos": [board.hex], "anchor_blocks": [named]})
        assert status == 400, body
        assert body["message"] == (
            f"anchor_blocks: block {block} (height {height}) is pruned from this node (it keeps blocks "
            f"from height {prune_height} up): fetch it back with `bitcoin-cli getblockfrompeer {block} "
            "<peer id>` (ids from `bitcoin-cli getpeerinfo`), then try again"
        )
    assert daemon.request("GET", "/api/v1/wallet/vtxos") == (200, [])


@pytest.mark.parametrize(
    ("named", "why"),
    [
        (["00" * 32], "bitcoind knows no block " + "00" * 32),
        ([10**8], "no block at height 100000000: bitcoind's chain ends at"),
        (["xyz"], "anchor_blocks[0]: expected a block hash"),
        ([True], "anchor_blocks[0]: expected a block hash"),
        ("00" * 32, "must be a list"),
    ],
)
def test_unusable_anchor_blocks_are_400(
    daemon: DaemonProcess, bitcoind: RegtestNode, named: object, why: str
) -> None:
    forge = Forge(bitcoind)
    board = forge.board(30_000)
    spend_anchors(bitcoind, forge, board)
    status, body = daemon.request("POST", IMPORT, {"vtxos": [board.hex], "anchor_blocks": named})
    assert status == 400 and why in body["message"], body
