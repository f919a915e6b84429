"""Claims that never stick, on a regtest node of their own: a claim left below the market is replaced, one
refused for its fee is repriced, and whichever candidate confirms completes the exit with its own fee, even
one mined after its exit went back to claimable."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exitd.chain.fees import btc_to_sat
from exitd.daemon.lifecycle import CRASH_EXIT_CODE
from exitd.regtest.forge import Forge, ForgedVtxo
from exitd.regtest.node import MINER_WALLET, RegtestNode
from tests.conftest import EVERY_NODE
from tests.integration.test_exit_faults import set_crash_point, wait_for_exit
from tests.support.daemon import DaemonProcess, running_daemon
from tests.support.exits import (
    advance_until,
    all_in,
    fund_wallet,
    import_and_start,
    outside_claim,
    owned,
    progress,
    states,
)

pytestmark = pytest.mark.bitcoind

REPLACE_AFTER = 2
# sat/kvB the node's own estimator learns before the claims (a claim is never priced from the fallback).
MARKET = 5000


@pytest.fixture
def claimable_board(
    tmp_path: Path, private_bitcoind: RegtestNode
) -> Iterator[tuple[DaemonProcess, RegtestNode, ForgedVtxo]]:
    """exitd on a node of its own, with one exit claimable: the board it exits."""
    node = private_bitcoind
    node.fund_miner()
    config = f"[claims]\nreplace_after_blocks = {REPLACE_AFTER}\n"
    with running_daemon(tmp_path / "exitd", node, config) as daemon:
        fund_wallet(daemon, node, coins=1)
        board = Forge(node).board(60_000, owned(daemon, 0))
        import_and_start(daemon, [board.hex])
        advance_until(daemon, node, all_in("claimable"))
        teach_market(node)
        yield daemon, node, board


@pytest.fixture
def claimable(
    claimable_board: tuple[DaemonProcess, RegtestNode, ForgedVtxo],
) -> tuple[DaemonProcess, RegtestNode, str]:
    """exitd on a node of its own, with one exit claimable: its VTXO id."""
    daemon, node, board = claimable_board
    return daemon, node, str(board.id)


def teach_market(node: RegtestNode) -> None:
    """Blocks of payments at MARKET until bitcoind's estimator has a rate for a claim's horizon."""
    for _ in range(20):
        for _ in range(4):
            address = node.rpc("getnewaddress", wallet=MINER_WALLET)
            args = ("", "", False, True, None, "unset", None, MARKET // 1000)
            node.rpc("sendtoaddress", address, "0.001", *args, wallet=MINER_WALLET)
        node.mine(1)
        if "feerate" in node.rpc("estimatesmartfee", 144, "economical"):
            return
    raise AssertionError("bitcoind learnt no fee estimate")


def exit_status(daemon: DaemonProcess, vtxo_id: str) -> dict[str, Any]:
    status, body = daemon.request("GET", f"/api/v1/exits/status/{vtxo_id}")
    assert status == 200, body
    return dict(body["state"])


def claim_at(daemon: DaemonProcess, node: RegtestNode, fee_rate: int) -> dict[str, Any]:
    body = {"destination": node.miner_address(), "fee_rate": fee_rate}
    status, answer = daemon.request("POST", "/api/v1/exits/claim/all", body)
    assert status == 200, answer
    return dict(answer)


def mempool_fee(node: RegtestNode, txid: str) -> int:
    return btc_to_sat(node.rpc("getmempoolentry", txid)["fees"]["base"])


def empty_blocks(node: RegtestNode, count: int) -> None:
    """Blocks that take nothing from the mempool: the claim keeps waiting."""
    for _ in range(count):
        node.rpc("generateblock", node.miner_address(), [])


def fill_the_next_block(node: RegtestNode) -> None:
    """A market where blocks are full: the block template holds a 50 sat/vB tx beside the claim, and the
    mempool half as much again that no block takes (a large tx the miner deprioritised), so the next
    block's rate is well above the node's estimate, which becomes the claim rate."""
    fast = node.rpc("getnewaddress", wallet=MINER_WALLET)
    node.rpc(
        "sendtoaddress", fast, "0.001", "", "", False, True, None, "unset", None, 50, wallet=MINER_WALLET
    )
    outputs = {node.rpc("getnewaddress", wallet=MINER_WALLET): "0.001" for _ in range(40)}
    large = node.rpc("sendmany", "", outputs, wallet=MINER_WALLET)
    node.rpc("prioritisetransaction", large, 0, -100_000_000)
    info = node.rpc("getmempoolinfo")
    template = node.rpc("getblocktemplate", {"rules": ["segwit"]})
    assert large not in {t["txid"] for t in template["transactions"]}
    assert info["bytes"] > 1.5 * sum(t["weight"] // 4 for t in template["transactions"])


def stuck_claim(daemon: DaemonProcess, node: RegtestNode, vtxo_id: str) -> tuple[str, str]:
    """A claim sent at 1 sat/vB, then blocks fill up: after REPLACE_AFTER blocks it is replaced at the
    claim rate. Returns (first candidate, replacement)."""
    first = claim_at(daemon, node, 1000)["txid"]
    assert exit_status(daemon, vtxo_id)["claim_fee_sat"] == mempool_fee(node, first)
    fill_the_next_block(node)
    empty_blocks(node, REPLACE_AFTER - 1)
    progress(daemon)
    assert exit_status(daemon, vtxo_id)["claim_txid"] == first  # not yet: it has not waited long enough
    empty_blocks(node, 1)
    progress(daemon)
    state = exit_status(daemon, vtxo_id)
    second = state["claim_txid"]
    assert state["type"] == "claim-in-progress" and second != first
    mempool = set(node.rpc("getrawmempool"))
    assert second in mempool and first not in mempool
    assert state["claim_fee_sat"] == mempool_fee(node, second)
    entry = node.rpc("getmempoolentry", second)
    # The claim rate (the estimate: blocks are full), and BIP125's least: the old fee plus the increment.
    increment = btc_to_sat(node.rpc("getmempoolinfo")["incrementalrelayfee"])
    first_fee = stored_candidates(daemon)[first]
    assert mempool_fee(node, second) >= first_fee + increment * entry["vsize"] // 1000
    assert mempool_fee(node, second) * 1000 // entry["vsize"] >= MARKET
    # Same input, same destination.
    old = node.rpc("decoderawtransaction", stored_raw(daemon, first))
    new = node.rpc("getrawtransaction", second, 1)
    txid, vout = vtxo_id.split(":")
    assert [(i["txid"], i["vout"]) for i in new["vin"]] == [(txid, int(vout))]
    assert [(i["txid"], i["vout"]) for i in old["vin"]] == [(txid, int(vout))]
    assert new["vout"][0]["scriptPubKey"] == old["vout"][0]["scriptPubKey"]
    return first, second


def stored_candidates(daemon: DaemonProcess) -> dict[str, int]:
    """Every claim candidate exitd stored, with its fee."""
    with sqlite3.connect(daemon.datadir / "exitd.sqlite3") as conn:
        return dict(conn.execute("select txid, fee from claim_txs").fetchall())


def stored_raw(daemon: DaemonProcess, txid: str) -> str:
    with sqlite3.connect(daemon.datadir / "exitd.sqlite3") as conn:
        (raw,) = conn.execute("select raw from claim_txs where txid = ?", (txid,)).fetchone()
    return bytes(raw).hex()


def test_a_claim_stuck_below_the_claim_rate_is_replaced_and_the_replacement_confirms(
    claimable: tuple[DaemonProcess, RegtestNode, str],
) -> None:
    daemon, node, vtxo_id = claimable
    _, second = stuck_claim(daemon, node, vtxo_id)
    fee = mempool_fee(node, second)
    node.mine(1)
    progress(daemon)
    state = exit_status(daemon, vtxo_id)
    assert (state["type"], state["txid"], state["claim_fee_sat"]) == ("claimed", second, fee)


@pytest.mark.parametrize("private_bitcoind", EVERY_NODE, indirect=True)
def test_the_older_candidate_confirming_instead_completes_the_exit_with_its_own_fee_after_a_restart(
    claimable: tuple[DaemonProcess, RegtestNode, str],
) -> None:
    daemon, node, vtxo_id = claimable
    first, second = stuck_claim(daemon, node, vtxo_id)
    first_fee = stored_candidates(daemon)[first]
    # exitd restarts mid-claim: both candidates are still watched. Meanwhile a miner takes the first one
    # (its raw tx as exitd stored it) although the replacement is the one in the mempool.
    daemon.stop()
    node.rpc("generateblock", node.miner_address(), [stored_raw(daemon, first)])
    daemon.start()
    assert second not in node.rpc("getrawmempool")
    progress(daemon)
    state = exit_status(daemon, vtxo_id)
    assert (state["type"], state["txid"], state["claim_fee_sat"]) == ("claimed", first, first_fee)
    assert first_fee < stored_candidates(daemon)[second]
    status, vtxo = daemon.request("GET", f"/api/v1/wallet/vtxos/{vtxo_id}")
    assert status == 200, vtxo
    assert vtxo["state"] == {"type": "spent"}


def test_a_claim_refused_for_its_fee_is_repriced_on_a_later_block_and_confirms(
    claimable: tuple[DaemonProcess, RegtestNode, str],
) -> None:
    daemon, node, vtxo_id = claimable
    first = claim_at(daemon, node, 1000)["txid"]  # 1 sat/vB, in the mempool
    # The node comes back with a floor of 5 sat/vB and no mempool: exitd sends its claim again and the node
    # refuses it for its fee.
    node.stop()
    node.extra_args = ("-minrelaytxfee=0.00005", "-persistmempool=0")
    node.start()
    floor = btc_to_sat(node.rpc("getmempoolinfo")["mempoolminfee"])
    assert floor == 5000
    progress(daemon)
    state = exit_status(daemon, vtxo_id)
    assert (state["type"], state["claim_txid"]) == ("claim-in-progress", first)
    assert first not in node.rpc("getrawmempool")
    assert "claim_refused" in daemon.log_text() and "min relay fee not met" in daemon.log_text()
    progress(daemon)  # the same block: never sent again as it is
    assert node.rpc("getrawmempool") == []
    node.mine(1)
    progress(daemon)
    state = exit_status(daemon, vtxo_id)
    second = state["claim_txid"]
    assert state["type"] == "claim-in-progress" and second != first
    entry = node.rpc("getmempoolentry", second)
    fee = btc_to_sat(entry["fees"]["base"])
    assert fee * 1000 // entry["vsize"] >= floor and state["claim_fee_sat"] == fee
    assert set(stored_candidates(daemon)) == {first, second}
    node.mine(1)
    progress(daemon)
    state = exit_status(daemon, vtxo_id)
    assert (state["type"], state["txid"], state["claim_fee_sat"]) == ("claimed", second, fee)
    assert states(daemon) == {vtxo_id: "claimed"}


def test_a_requested_claim_refused_for_its_fee_keeps_its_exit_in_progress_and_is_repriced(
    claimable: tuple[DaemonProcess, RegtestNode, str],
) -> None:
    daemon, node, vtxo_id = claimable
    destination = node.miner_address()
    body = {"destination": destination, "fee_rate": 2000}
    # Signing is deterministic: a claim that dies before its broadcast names the tx the same claim will be
    # again at this tip, and the node is told to take that tx for one paying nothing.
    set_crash_point(daemon, "before_claim_broadcast")
    daemon.stop()
    daemon.start()
    with pytest.raises(OSError):  # the daemon dies while answering
        daemon.request("POST", "/api/v1/exits/claim/all", body)
    assert wait_for_exit(daemon) == CRASH_EXIT_CODE
    (txid,) = stored_candidates(daemon)
    node.rpc("prioritisetransaction", txid, 0, -100_000_000)
    set_crash_point(daemon, "")
    daemon.start()

    status, answer = daemon.request("POST", "/api/v1/exits/claim/all", body)
    assert status == 200 and answer["txid"] == txid, answer
    assert "fee not met" in answer["refused"] and "repriced" in answer["message"]
    state = exit_status(daemon, vtxo_id)
    assert (state["type"], state["claim_txid"]) == ("claim-in-progress", txid)
    progress(daemon)  # the same block: not sent again
    assert txid not in node.rpc("getrawmempool") and set(stored_candidates(daemon)) == {txid}

    node.mine(1)
    progress(daemon)
    state = exit_status(daemon, vtxo_id)
    repriced = state["claim_txid"]
    assert state["type"] == "claim-in-progress" and repriced != txid
    entry = node.rpc("getmempoolentry", repriced)
    increment = btc_to_sat(node.rpc("getmempoolinfo")["incrementalrelayfee"])
    assert btc_to_sat(entry["fees"]["base"]) * 1000 // entry["vsize"] >= 2000 + increment  # above the refused
    node.mine(1)
    progress(daemon)
    assert exit_status(daemon, vtxo_id)["txid"] == repriced


@pytest.mark.parametrize("restarted", [False, True], ids=["running", "restarted"])
@pytest.mark.parametrize("private_bitcoind", EVERY_NODE, indirect=True)
def test_a_dropped_claim_mined_after_its_exit_went_back_to_claimable_completes_the_exit_with_its_fee(
    claimable_board: tuple[DaemonProcess, RegtestNode, ForgedVtxo], restarted: bool
) -> None:
    daemon, node, board = claimable_board
    vtxo_id = str(board.id)
    first = claim_at(daemon, node, 1000)["txid"]
    fee = stored_candidates(daemon)[first]
    # Another tool holding the key outbids exitd's claim in the node's mempool, and the node then restarts
    # without its mempool: the exit, whose state named the other claim, is claimable again, exitd's claim
    # in no mempool of the node's.
    rival = outside_claim(daemon, node, board, 3 * fee)
    rival_txid = node.rpc("sendrawtransaction", rival.serialize().hex())
    progress(daemon)
    state = exit_status(daemon, vtxo_id)
    assert (state["type"], state["claim_txid"]) == ("claim-in-progress", rival_txid)
    node.stop()
    node.extra_args = ("-persistmempool=0",)
    node.start()
    progress(daemon)
    assert exit_status(daemon, vtxo_id)["type"] == "claimable"
    assert node.rpc("getrawmempool") == []  # a dropped claim of a claimable exit is watched, not sent
    # A miner that kept exitd's claim mines it (while exitd runs, or is down: its claims are in the store).
    if restarted:
        daemon.stop()
    block = node.rpc("generateblock", node.miner_address(), [stored_raw(daemon, first)])["hash"]
    if restarted:
        daemon.start()
    progress(daemon)
    state = exit_status(daemon, vtxo_id)
    assert (state["type"], state.get("txid"), state.get("claim_fee_sat")) == ("claimed", first, fee)
    assert state["block"]["hash"] == block
    assert states(daemon) == {vtxo_id: "claimed"}
    # A reorg that takes the block out brings the claim back in progress; the block back, claimed again.
    node.rpc("invalidateblock", block)
    progress(daemon)
    assert exit_status(daemon, vtxo_id)["type"] == "claim-in-progress"
    node.rpc("reconsiderblock", block)
    progress(daemon)
    state = exit_status(daemon, vtxo_id)
    assert (state["type"], state.get("txid"), state.get("claim_fee_sat")) == ("claimed", first, fee)
    assert "claim_step_failed" not in daemon.log_text()
